"""Linear contextual bandits, batched over users and slots in numpy.

Every bandit here keeps ONE model of the click probability shared by all users (the context
makes it personal); no per-user Python loops. LinUCB and both Thompson samplers score each
user's K candidates from a dense per-candidate context built by `bandit_features`::

    x = [ e,  c - 0.5,  e * m,  e . m,  1 ]

- ``e`` ``(dim,)``: the candidate's item embedding (the first ``dim`` candidate columns);
- ``c - 0.5``: the other candidate columns (quality, log-popularity, length, topic new to the
  user, the user's recent exposure to the topic; more in envs that add pair features), each in
  [0, 1] and centred so that their weights measure an effect, not an offset;
- ``e * m`` ``(dim,)``: element-wise product with ``m``, the mean embedding of the user's
  recent clicks (the last ``dim`` columns of ``obs["user"]``): per-dimension affinity;
- ``e . m``: their dot product (the sum of the previous block: affinity in one feature);
- ``1``: a bias.

So ``d = dim + F + 2`` (71 for the default ``dim = 32``, ``F = dim + 5``). Diag-LinUCB uses
the sparse item x topic-cluster context of its paper instead (see `DiagLinUCBRecommender`).

Each slate holds the top ``slate_size`` distinct candidates. ``update(obs, info, action,
feedback)`` learns from every shown slot at once: the reward of slot j is its click (times
``1 + watch_weight * watch_time`` when ``watch_weight > 0``; the step's watch time is on the
clicked slot); empty slots (``slate_ids`` -1: repeats, or the ignored action of a next-step
autoreset) are skipped. Users share the model, so ``reset`` and ``select`` have nothing per
user to forget.

Registered names: ``"linucb"``, ``"diag_linucb"``, ``"thompson"``, ``"inslate_thompson"``.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from recoworld.agents.base import _format, _slate_size, env_action_space, register_recommender
from recoworld.envs.observation import N_USER_SCALARS
from recoworld.errors import ConfigError
from recoworld.types import Recommendation


def bandit_features(candidates: np.ndarray, user: np.ndarray, dim: int) -> np.ndarray:
    """The context vectors of the module docstring.

    Args:
        candidates: ``(n, m, F)`` candidate rows of ``obs["candidates"]`` (all K, or the m
            shown ones), the item embedding in the first ``dim`` columns.
        user: ``(n, U)`` ``obs["user"]``, the mean recent-click embedding in the last ``dim``
            columns.
        dim: the catalog's embedding size.

    Returns:
        ``(n, m, dim + F + 2)`` float32 contexts (float32 halves the memory traffic of
        scoring; the statistics are accumulated in float64).
    """
    cand = np.asarray(candidates)
    n, m, f = cand.shape
    emb = cand[:, :, :dim]
    out = np.empty((n, m, dim + f + 2), np.float32)
    out[:, :, :f] = cand
    out[:, :, dim:f] -= 0.5
    np.multiply(emb, np.asarray(user)[:, None, -dim:], out=out[:, :, f : f + dim])
    out[:, :, f + dim] = out[:, :, f : f + dim].sum(2)
    out[:, :, f + dim + 1] = 1.0
    return out


def _positive(name: str, value: Any, fix: str, zero_ok: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{name}={value!r} must be a finite number {bound}; {fix}")


def _pick(score: np.ndarray, slate_size: int) -> np.ndarray:
    """Fill slots in order, slot j taking the best candidate not yet chosen under sample j.

    Args:
        score: ``(n, K, ..., S)`` candidate scores under S samples (S = 1: one sample serves
            every slot, i.e. the top ``slate_size`` of that ranking; S = ``slate_size``: one
            sample per slot).
        slate_size: slots to fill.

    Returns:
        ``(n, ..., slate_size)`` distinct candidate indices (ties: the lowest index).
    """
    chosen = np.zeros(score.shape[:-1], bool)
    out = np.empty(score.shape[:1] + score.shape[2:-1] + (slate_size,), np.int64)
    for j in range(slate_size):  # a loop over slots, not users
        s = np.where(chosen, -np.inf, score[..., min(j, score.shape[-1] - 1)])
        a = s.argmax(1)
        out[..., j] = a
        np.put_along_axis(chosen, a[:, None], True, axis=1)
    return out


@dataclass(eq=False)
class _Bandit:
    """Shared machinery: rewards from feedback, batched updates, no per-user state."""

    action_space: spaces.Space[Any]
    _: KW_ONLY
    watch_weight: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        _positive("watch_weight", self.watch_weight, "use 0 to learn from clicks only", True)
        self._validate()
        self.slate_size = _slate_size(self.action_space)
        self.rng = np.random.default_rng(self.seed)
        self.n_updates = 0  # shown slots learned from

    def _validate(self) -> None:
        """Check the subclass's hyperparameters (raise `ConfigError`)."""

    def _learn(
        self,
        obs: dict[str, np.ndarray],
        info: dict[str, Any],
        idx: np.ndarray,
        r: np.ndarray,
        valid: np.ndarray,
    ) -> None:
        """Learn from the shown slots ``idx`` ``(n, L)`` with rewards ``r`` where ``valid``."""
        raise NotImplementedError

    def update(
        self,
        obs: dict[str, np.ndarray],
        info: dict[str, Any],
        action: np.ndarray,
        feedback: dict[str, Any],
    ) -> None:
        """Learn from one step of every user, all shown slots in one batch.

        Args:
            obs: the observation the action was chosen from (``candidates`` ``(n, K, F)``).
            info: its info (``candidate_ids`` ``(n, K)``).
            action: ``(n, L)`` (or ``(n,)``) candidate indices that were shown.
            feedback: the step's info: ``clicks`` ``(n, L)``, ``slate_ids`` ``(n, L)`` (-1 =
                nothing shown there), ``watch_time`` ``(n,)``.
        """
        idx = np.asarray(action)
        idx = idx[:, None] if idx.ndim == 1 else idx
        n, slate_size = idx.shape
        r = np.asarray(feedback["clicks"]).reshape(n, slate_size).astype(np.float64)
        if self.watch_weight:
            watch = np.asarray(feedback["watch_time"], np.float64).reshape(n, 1)
            r = r * (1.0 + self.watch_weight * watch)
        valid = np.asarray(feedback["slate_ids"]).reshape(n, slate_size) >= 0
        if valid.any():
            self._learn(obs, info, idx, r, valid)
            self.n_updates += int(valid.sum())

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Nothing per user: the model is shared and keeps learning across users."""

    def select(self, keep: np.ndarray) -> None:
        """Nothing per user to compact."""


@dataclass(eq=False)
class _FullCovariance(_Bandit):
    """Ridge statistics over `bandit_features` with the full ``d x d`` matrix
    ``P = ridge I + sum x x^T``.

    A batch of m observations adds ``X^T X`` to P and ``X^T r`` to b, then P is factored once
    (Cholesky, ``O(d^3)`` with d about 71): cheaper than m rank-one Sherman-Morrison updates of
    ``P^-1`` when m = users x slots is in the thousands, and numerically steadier.
    """

    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim < 1:
            raise ConfigError(
                f"dim={self.dim!r} must be a positive integer: the catalog's embedding size "
                "(env.unwrapped.catalog.dim)"
            )
        super().__post_init__()
        self.n_features: int | None = None

    def _ridge(self) -> float:
        raise NotImplementedError

    def features(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(n, K, d)`` contexts of every candidate (`bandit_features`)."""
        return self._allocated(bandit_features(obs["candidates"], obs["user"], self.dim))

    def _allocated(self, x: np.ndarray) -> np.ndarray:
        if self.n_features is None:  # the first observation fixes d
            self.n_features = d = x.shape[2]
            self.precision = self._ridge() * np.eye(d)
            self.b = np.zeros(d)
            self._refresh()
        return x

    def _learn(
        self,
        obs: dict[str, np.ndarray],
        info: dict[str, Any],
        idx: np.ndarray,
        r: np.ndarray,
        valid: np.ndarray,
    ) -> None:
        shown = np.asarray(obs["candidates"])[np.arange(idx.shape[0])[:, None], idx]
        x = self._allocated(bandit_features(shown, obs["user"], self.dim))
        x = x[valid].astype(np.float64)
        self.precision += x.T @ x
        self.b += x.T @ r[valid]
        self._refresh()

    def _refresh(self) -> None:
        chol = np.linalg.cholesky(self.precision)  # P = C C^T
        self.root = np.linalg.inv(chol).T  # U = C^-T, so P^-1 = U U^T
        self.covariance = self.root @ self.root.T  # P^-1
        self.theta = self.covariance @ self.b
        self._root32 = self.root.astype(np.float32)  # scoring runs in float32
        self._theta32 = self.theta.astype(np.float32)

    @property
    def feature_variance(self) -> np.ndarray:
        """``(d,)`` diagonal of ``P^-1`` (posterior variance per feature, up to the noise)."""
        return np.diag(self.covariance).copy()


@dataclass(eq=False, kw_only=True)
class LinUCBRecommender(_FullCovariance):
    """LinUCB (Li et al., 2010) with one shared ridge model and the full ``d x d`` matrix.

    Score of a candidate with context x: ``x . theta + alpha sqrt(x^T P^-1 x)`` where
    ``P = ridge I + sum x x^T`` over every shown slot so far and ``theta = P^-1 sum r x``.
    Deterministic: propensity 1, ``deterministic=True``.

    Args:
        action_space: the single env's action space.
        dim: the catalog's embedding size.
        alpha: width of the confidence bonus (>= 0; 0 is greedy ridge regression).
        ridge: the prior precision (> 0).
        watch_weight: reward weight of the watch time on the clicked slot (>= 0).
        seed: unused (deterministic); accepted for a uniform signature.
    """

    alpha: float = 1.0
    ridge: float = 1.0

    def _validate(self) -> None:
        _positive("alpha", self.alpha, "use 0 for no exploration bonus", zero_ok=True)
        _positive("ridge", self.ridge, "the prior precision must be positive (e.g. 1.0)")

    def _ridge(self) -> float:
        return float(self.ridge)

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` upper confidence bounds."""
        x = self.features(obs)
        n, k, d = x.shape
        flat = x.reshape(n * k, d)
        y = flat @ self._root32
        width = np.einsum("md,md->m", y, y)  # x^T U U^T x = x^T P^-1 x
        return (flat @ self._theta32 + self.alpha * np.sqrt(width)).reshape(n, k)

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        idx = _pick(self.score(obs, info)[:, :, None], self.slate_size)
        return Recommendation(_format(idx, self.slate_size), np.ones(idx.shape), True)


@dataclass(eq=False)
class DiagLinUCBRecommender(_Bandit):
    """Diag-LinUCB, after "Online Matching: A Real-time Bandit System for Large-scale
    Recommendations" (Yi et al., 2023, arXiv:2307.15893): LinUCB whose matrix ``P`` keeps
    only its diagonal.

    As in the paper, the context is sparse: the reward of item j for user u is modelled as
    ``w_u . theta_j``, where ``w_u = [user's recent clicked-topic mix (n_topics), 1]`` (the
    decaying topic mix in ``obs["user"]``, the user's soft membership of topic "clusters",
    plus a bias cluster that learns the item's overall appeal) and ``theta_j`` is item j's own
    weight per cluster: a linear model over the cross features ``onehot(j) x w_u``, shared by
    all users. Each (item, cluster) edge c keeps two numbers, ``p_jc = ridge + sum w_uc^2``
    and ``b_jc = sum r w_uc``; then ``theta_jc = b_jc / p_jc`` and the score is::

        sum_c w_uc theta_jc + alpha sqrt(sum_c w_uc^2 / p_jc)

    Cheap and distributable: an update adds to two scalars per touched edge (no matrix, no
    inverse, ``O(n_topics)`` per shown item), and partial sums from many workers add up
    exactly, so edges can be updated independently and in real time. The price is that
    correlations between features are ignored; that is harmless for these sparse, nearly
    orthogonal cross features, but on dense correlated contexts such as `bandit_features` the
    per-feature regressions double-count shared signal (measured on Engagement-v0 with 256
    users: 0.13 clicks per step there against 0.22 for random). ``feature_variance``
    ``1 / p_jc`` shrinks exactly on the edges it has seen.

    Args:
        action_space: the single env's action space.
        n_items: catalog size (``env.unwrapped.catalog.n_items``).
        n_topics: topics in the catalog (``env.unwrapped.catalog.n_topics``).
        alpha: width of the confidence bonus (>= 0).
        ridge: the prior precision per edge (> 0).
        watch_weight: reward weight of the watch time on the clicked slot (>= 0).
        seed: unused (deterministic).
    """

    n_items: int
    n_topics: int
    _: KW_ONLY
    alpha: float = 0.3
    ridge: float = 1.0

    def _validate(self) -> None:
        for name in ("n_items", "n_topics"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(
                    f"{name}={v!r} must be a positive integer (env.unwrapped.catalog.{name})"
                )
        _positive("alpha", self.alpha, "use 0 for no exploration bonus", zero_ok=True)
        _positive("ridge", self.ridge, "the prior precision must be positive (e.g. 1.0)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.n_clusters = self.n_topics + 1
        self.precision = np.full((self.n_items, self.n_clusters), float(self.ridge))
        self.b = np.zeros((self.n_items, self.n_clusters))

    def context(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(n, n_topics + 1)`` cluster memberships ``w_u``: topic mix, then the bias 1."""
        user = np.asarray(obs["user"], np.float64)
        mix = user[:, N_USER_SCALARS : N_USER_SCALARS + self.n_topics]
        return np.concatenate([mix, np.ones((user.shape[0], 1))], 1)

    @property
    def theta(self) -> np.ndarray:
        """``(n_items, n_topics + 1)`` per-edge weights ``b_jc / p_jc``."""
        return self.b / self.precision

    @property
    def feature_variance(self) -> np.ndarray:
        """``(n_items, n_topics + 1)`` posterior variance per edge ``1 / p_jc``."""
        return 1.0 / self.precision

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` upper confidence bounds of the candidates ``info["candidate_ids"]``."""
        w = self.context(obs)
        cand = np.asarray(info["candidate_ids"])
        p, b = self.precision[cand], self.b[cand]  # (n, K, C)
        mean = np.einsum("nc,nkc->nk", w, b / p)
        return mean + self.alpha * np.sqrt(np.einsum("nc,nkc->nk", w * w, 1.0 / p))

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        idx = _pick(self.score(obs, info)[:, :, None], self.slate_size)
        return Recommendation(_format(idx, self.slate_size), np.ones(idx.shape), True)

    def _learn(
        self,
        obs: dict[str, np.ndarray],
        info: dict[str, Any],
        idx: np.ndarray,
        r: np.ndarray,
        valid: np.ndarray,
    ) -> None:
        w = self.context(obs)
        items = np.asarray(info["candidate_ids"])[np.arange(idx.shape[0])[:, None], idx]
        rows, slots = np.nonzero(valid)
        c = self.n_clusters
        edge = (items[rows, slots][:, None] * c + np.arange(c)).ravel()  # (m * C,) flat edges
        size = self.n_items * c
        ww = w[rows]
        self.precision += np.bincount(edge, (ww * ww).ravel(), size).reshape(-1, c)
        self.b += np.bincount(edge, (ww * r[rows, slots][:, None]).ravel(), size).reshape(-1, c)


@dataclass(eq=False, kw_only=True)
class ThompsonRecommender(_FullCovariance):
    """Linear Thompson sampling with a Gaussian posterior, one draw per user per step.

    Bayesian linear regression of the reward: prior ``theta ~ N(0, prior_var I)``, reward
    noise ``N(0, noise_var)``, so the posterior is ``N(P^-1 b, noise_var P^-1)`` with
    ``P = (noise_var / prior_var) I + sum x x^T``. Each step every user gets its own draw of
    theta and sees the top ``slate_size`` candidates under it.

    Propensities (``deterministic=False``) are Monte-Carlo estimates: alongside the draw that
    picks the slate, ``propensity_samples`` (M) more draws are made per user, each turned into
    a slate the same way. Following the protocol's convention (the probability of the item at
    slot j given the items above it), slot j's propensity is, among the M + 1 slates (the
    shown one included) that agree with the shown slate above slot j, the share that also put
    the shown item at slot j. It lies in ``(0, 1]``; counting the shown slate biases it up a
    little, the price of never returning 0 for an item that was in fact shown. Raise M for
    off-policy evaluation, lower it for speed (the cost is M + 1 scorings per step).

    Args:
        action_space: the single env's action space.
        dim: the catalog's embedding size.
        prior_var: prior variance of each weight (> 0).
        noise_var: reward noise variance (> 0); scales how widely the posterior explores.
        propensity_samples: extra draws per user for the propensity estimate (>= 1).
        watch_weight: reward weight of the watch time on the clicked slot (>= 0).
        seed: seed of its `numpy.random.Generator` (the posterior draws).
    """

    prior_var: float = 1.0
    noise_var: float = 0.05
    propensity_samples: int = 16

    def _validate(self) -> None:
        _positive("prior_var", self.prior_var, "the prior variance must be positive (e.g. 1.0)")
        _positive("noise_var", self.noise_var, "the noise variance must be positive (e.g. 0.05)")
        m = self.propensity_samples
        if not isinstance(m, int) or isinstance(m, bool) or m < 1:
            raise ConfigError(
                f"propensity_samples={m!r} must be an integer >= 1 (extra posterior draws per "
                "user for the propensity estimate; e.g. 16)"
            )

    def _ridge(self) -> float:
        return float(self.noise_var / self.prior_var)

    _samples_per_slate = 1  # posterior draws per slate (in-slate TS: one per slot)

    def _draw(self, n: int, sets: int) -> np.ndarray:
        """``(n, sets, S, d)`` posterior draws of theta (S draws per slate)."""
        assert self.n_features is not None
        shape = (n, sets, self._samples_per_slate, self.n_features)
        z = self.rng.standard_normal(shape, np.float32)
        step = (z.reshape(-1, self.n_features) @ self._root32.T).reshape(shape)  # one GEMM
        return self._theta32 + np.float32(math.sqrt(self.noise_var)) * step

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` scores under one posterior draw per user."""
        x = self.features(obs)
        theta = self._draw(x.shape[0], 1)[:, 0, 0]
        return np.matmul(x, theta[:, :, None])[:, :, 0]

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        x = self.features(obs)
        n, k, d = x.shape
        sets = 1 + self.propensity_samples
        theta = self._draw(n, sets)  # set 0 picks the slate; all sets estimate propensities
        per_set = self._samples_per_slate
        score = np.matmul(x, theta.reshape(n, -1, d).transpose(0, 2, 1))
        slates = _pick(score.reshape(n, k, sets, per_set), self.slate_size)  # (n, sets, L)
        idx = slates[:, 0]
        through = np.cumprod(slates == idx[:, None, :], axis=2)  # prefix agrees through j
        before = np.concatenate([np.ones_like(through[:, :, :1]), through[:, :, :-1]], axis=2)
        prop = through.sum(1) / before.sum(1)
        extras = {"propensity_samples": sets}  # slates behind each estimate
        return Recommendation(_format(idx, self.slate_size), prop, False, extras)


@dataclass(eq=False, kw_only=True)
class InSlateThompsonRecommender(ThompsonRecommender):
    """In-slate Thompson sampling, after "Dynamic Slate Recommendation with Gated Recurrent
    Units and Thompson Sampling" (Eide, Leslie and Frigessi, 2022).

    The same Gaussian posterior as `ThompsonRecommender`, but each slate slot draws its own
    theta: slot j shows the best candidate not yet in the slate under draw j. One slate so
    tries ``slate_size`` hypotheses about what the user wants at once, instead of ranking by
    one. Propensities are estimated as in `ThompsonRecommender`, each extra sample being a
    whole slate built from its own ``slate_size`` draws.

    Args:
        action_space: the single env's action space.
        dim: the catalog's embedding size.
        prior_var: prior variance of each weight (> 0).
        noise_var: reward noise variance (> 0).
        propensity_samples: extra slates per user for the propensity estimate (>= 1).
        watch_weight: reward weight of the watch time on the clicked slot (>= 0).
        seed: seed of its `numpy.random.Generator`.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self._samples_per_slate = self.slate_size

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` scores under the posterior mean (per-slot draws have no single score)."""
        x = self.features(obs)
        return x @ self._theta32


def _dense(cls: type[_FullCovariance]) -> Any:
    def make(env: Any, seed: int | None) -> _FullCovariance:
        return cls(env_action_space(env), env.unwrapped.catalog.dim, seed=seed)

    return make


def _diag(env: Any, seed: int | None) -> DiagLinUCBRecommender:
    catalog = env.unwrapped.catalog
    return DiagLinUCBRecommender(env_action_space(env), catalog.n_items, catalog.n_topics)


register_recommender("linucb", _dense(LinUCBRecommender))
register_recommender("diag_linucb", _diag)
register_recommender("thompson", _dense(ThompsonRecommender))
register_recommender("inslate_thompson", _dense(InSlateThompsonRecommender))
