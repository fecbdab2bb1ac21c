"""Linear contextual bandits, batched over users and slots in numpy.

Every bandit here keeps ONE linear model of the click probability shared by all users (the
context makes it personal) and scores each user's K candidates from a per-candidate context
vector ``x`` built from the observation by `bandit_features`::

    x = [ e,  c - 0.5,  e * m,  e . m,  1 ]

- ``e`` ``(dim,)``: the candidate's item embedding (the first ``dim`` candidate columns);
- ``c - 0.5``: the other candidate columns (quality, log-popularity, length, topic new to the
  user, the user's recent exposure to the topic; more in envs that add pair features), each in
  [0, 1] and centred so that their weights measure an effect, not an offset;
- ``e * m`` ``(dim,)``: element-wise product with ``m``, the mean embedding of the user's
  recent clicks (the last ``dim`` columns of ``obs["user"]``): per-dimension affinity;
- ``e . m``: their dot product (the sum of the previous block: affinity in one feature);
- ``1``: a bias.

So ``d = 2 dim + (F - dim) + 2`` (71 for the default ``dim = 32``, ``F = dim + 5``).

Each slate holds the top ``slate_size`` distinct candidates. ``update(obs, info, action,
feedback)`` learns from every shown slot at once: the reward of slot j is its click (plus
``watch_weight`` times the step's watch time on the clicked slot); empty slots (``slate_ids``
-1: repeats, or the ignored action of a next-step autoreset) are skipped. Users share the
model, so ``reset`` and ``select`` have nothing per user to forget.

Registered names: ``"linucb"``, ``"diag_linucb"``, ``"thompson"``, ``"inslate_thompson"``.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from recoworld.agents.base import _format, _slate_size, env_action_space, register_recommender
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
class _LinearBandit:
    """Shared machinery: features, batched updates, no per-user state."""

    action_space: spaces.Space[Any]
    dim: int
    _: KW_ONLY
    watch_weight: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim < 1:
            raise ConfigError(
                f"dim={self.dim!r} must be a positive integer: the catalog's embedding size "
                "(env.unwrapped.catalog.dim)"
            )
        _positive("watch_weight", self.watch_weight, "use 0 to learn from clicks only", True)
        self._validate()
        self.slate_size = _slate_size(self.action_space)
        self.rng = np.random.default_rng(self.seed)
        self.n_features: int | None = None
        self.n_updates = 0  # shown slots learned from

    def _validate(self) -> None:
        """Check the subclass's hyperparameters (raise `ConfigError`)."""

    def _allocate(self, d: int) -> None:
        """Allocate the statistics for d features (at the first observation)."""
        raise NotImplementedError

    def _absorb(self, x: np.ndarray, r: np.ndarray) -> None:
        """Add observations ``x`` ``(m, d)`` with rewards ``r`` ``(m,)`` to the statistics."""
        raise NotImplementedError

    def features(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(n, K, d)`` contexts of every candidate (`bandit_features`)."""
        x = bandit_features(obs["candidates"], obs["user"], self.dim)
        if self.n_features is None:
            self.n_features = x.shape[2]
            self._allocate(x.shape[2])
        return x

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
            info: its info (unused; the candidates are in ``obs``).
            action: ``(n, L)`` (or ``(n,)``) candidate indices that were shown.
            feedback: the step's info: ``clicks`` ``(n, L)``, ``slate_ids`` ``(n, L)`` (-1 =
                nothing shown there), ``watch_time`` ``(n,)``.
        """
        idx = np.asarray(action)
        idx = idx[:, None] if idx.ndim == 1 else idx
        n, slate_size = idx.shape
        shown = np.asarray(obs["candidates"])[np.arange(n)[:, None], idx]
        x = bandit_features(shown, obs["user"], self.dim)
        if self.n_features is None:
            self.n_features = x.shape[2]
            self._allocate(x.shape[2])
        clicks = np.asarray(feedback["clicks"]).reshape(n, slate_size).astype(np.float64)
        r = clicks
        if self.watch_weight:
            watch = np.asarray(feedback["watch_time"], np.float64).reshape(n, 1)
            r = clicks * (1.0 + self.watch_weight * watch)
        valid = np.asarray(feedback["slate_ids"]).reshape(n, slate_size) >= 0
        if valid.any():
            self._absorb(x[valid].astype(np.float64), r[valid])
            self.n_updates += int(valid.sum())

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Nothing per user: the model is shared and keeps learning across users."""

    def select(self, keep: np.ndarray) -> None:
        """Nothing per user to compact."""


@dataclass(eq=False)
class _FullCovariance(_LinearBandit):
    """Ridge statistics with the full ``d x d`` matrix ``P = ridge I + sum x x^T``.

    A batch of m observations adds ``X^T X`` to P and ``X^T r`` to b, then P is factored once
    (Cholesky, ``O(d^3)`` with d about 71): cheaper than m rank-one Sherman-Morrison updates of
    ``P^-1`` when m = users x slots is in the thousands, and numerically steadier.
    """

    def _ridge(self) -> float:
        raise NotImplementedError

    def _allocate(self, d: int) -> None:
        self.precision = self._ridge() * np.eye(d)
        self.b = np.zeros(d)
        self._refresh()

    def _absorb(self, x: np.ndarray, r: np.ndarray) -> None:
        self.precision += x.T @ x
        self.b += x.T @ r
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


@dataclass(eq=False, kw_only=True)
class DiagLinUCBRecommender(_LinearBandit):
    """Diag-LinUCB: LinUCB with a diagonal ``P``, after "Online Matching: A Real-time Bandit
    System for Large-scale Recommendations" (Yi et al., 2023, arXiv:2307.15893).

    Only the diagonal of ``P`` is kept: per feature i, ``p_i = ridge + sum x_i^2`` and
    ``b_i = sum r x_i``; then ``theta_i = b_i / p_i`` and the score is
    ``x . theta + alpha sqrt(sum_i x_i^2 / p_i)``. Every statistic is a plain sum over
    observations, one number per feature: updates cost ``O(d)`` per observation instead of
    ``O(d^2)``, need no matrix inverse, and partial sums from many workers (or many users in a
    batch) add up exactly, which is what makes it cheap to distribute and to update in real
    time. The price: correlations between features are ignored, so ``theta`` is a
    per-feature regression rather than the joint ridge solution, and the bonus treats
    features as independent. ``feature_variance`` ``1 / p_i`` shrinks exactly on the
    features that were non-zero in what it was shown.

    Args:
        action_space: the single env's action space.
        dim: the catalog's embedding size.
        alpha: width of the confidence bonus (>= 0).
        ridge: the prior precision per feature (> 0).
        watch_weight: reward weight of the watch time on the clicked slot (>= 0).
        seed: unused (deterministic).
    """

    alpha: float = 1.0
    ridge: float = 1.0

    def _validate(self) -> None:
        _positive("alpha", self.alpha, "use 0 for no exploration bonus", zero_ok=True)
        _positive("ridge", self.ridge, "the prior precision must be positive (e.g. 1.0)")

    def _allocate(self, d: int) -> None:
        self.precision = np.full(d, float(self.ridge))
        self.b = np.zeros(d)

    def _absorb(self, x: np.ndarray, r: np.ndarray) -> None:
        self.precision += np.einsum("md,md->d", x, x)
        self.b += r @ x

    @property
    def theta(self) -> np.ndarray:
        """``(d,)`` per-feature weights ``b_i / p_i``."""
        return self.b / self.precision

    @property
    def feature_variance(self) -> np.ndarray:
        """``(d,)`` posterior variance per feature ``1 / p_i`` (up to the noise)."""
        return 1.0 / self.precision

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` upper confidence bounds under the diagonal approximation."""
        x = self.features(obs)
        theta = self.theta.astype(np.float32)
        var = self.feature_variance.astype(np.float32)
        return x @ theta + self.alpha * np.sqrt((x * x) @ var)

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        idx = _pick(self.score(obs, info)[:, :, None], self.slate_size)
        return Recommendation(_format(idx, self.slate_size), np.ones(idx.shape), True)


@dataclass(eq=False, kw_only=True)
class ThompsonRecommender(_FullCovariance):
    """Linear Thompson sampling with a Gaussian posterior, one draw per user per step.

    Bayesian linear regression of the reward: prior ``theta ~ N(0, prior_var I)``, reward
    noise ``N(0, noise_var)``, so the posterior is ``N(P^-1 b, noise_var P^-1)`` with
    ``P = (noise_var / prior_var) I + sum x x^T``. Each step every user gets its own draw of
    theta and sees the top ``slate_size`` candidates under it.

    Propensities (``deterministic=False``) are Monte-Carlo estimates: alongside the draw that
    picks the slate, ``propensity_samples`` (M) more draws are made per user, each turned into
    a slate the same way; the propensity of the shown item at slot j is the share of the
    M + 1 slates (the shown one included) that put that item at slot j. So it lies in
    ``[1 / (M + 1), 1]``; counting the shown slate biases it up by at most ``1 / (M + 1)``,
    the price of never returning 0 for an item that was in fact shown. Raise M for off-policy
    evaluation, lower it for speed (the cost is M + 1 scorings per step).

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
        prop = (slates == idx[:, None, :]).mean(1)
        return Recommendation(_format(idx, self.slate_size), prop, False)


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


def _factory(cls: type[_LinearBandit]) -> Any:
    def make(env: Any, seed: int | None) -> _LinearBandit:
        return cls(env_action_space(env), env.unwrapped.catalog.dim, seed=seed)

    return make


register_recommender("linucb", _factory(LinUCBRecommender))
register_recommender("diag_linucb", _factory(DiagLinUCBRecommender))
register_recommender("thompson", _factory(ThompsonRecommender))
register_recommender("inslate_thompson", _factory(InSlateThompsonRecommender))
