"""Off-policy estimators: dataclasses whose fields are hyperparameters; arrays in, number out.

Each estimator answers "what mean reward per logged row would the *target* policy have earned
on the contexts of this log?" from the rewards the *logging* policy earned, the logging
policy's propensities and the target's probabilities of the logged actions. Per-row terms
(``num``, ``den``) make every estimate a ratio ``sum(num) / sum(den)`` (``den = 1`` except for
self-normalised estimators), so one bootstrap serves them all.

Single-item estimators (arrays ``(n,)``; one chosen item per row):

- `IPS`: ``mean(w r)``, ``w = target / logging``; unbiased when the logger gives every action
  the target may take a positive probability.
- `ClippedIPS`: the weight clipped at ``max_weight`` (lower variance, biased toward 0).
- `SNIPS`: ``sum(w r) / sum(w)``; self-normalised (consistent, small bias, lower variance).
- `DoublyRobust`: a reward model's prediction for the target plus the IPS-weighted residual.

Slate estimators (arrays ``(n, L)``; per-slot rewards such as clicks), each equal to `IPS` at
``L == 1`` (tests check this first, as DESIGN.md asks):

- `IndependentIPS`: slot k's reward weighted by slot k's own *marginal* propensity ratio
  (Li et al. 2018); unbiased when slot k's reward depends only on the item at slot k.
- `RewardInteractionIPS`: slot k's reward weighted by the product of the *conditional* ratios
  of slots ``0 .. k`` (McInerney et al. 2020); unbiased when slot k's reward depends only on
  the items at slots ``<= k`` (cascade-like users).
- `SlateIPS`: every slot weighted by the whole slate's ratio; unbiased for any user, and the
  noisiest.
- `PseudoInverse`: Swaminathan et al. 2017 for a *uniformly random* logger of slates of L
  distinct candidates out of K, in closed form (see the class); unbiased when the slate's
  reward is a sum of per-(slot, item) terms.

Propensity conventions. The log's ``propensity`` column (and `Recommendation.propensity`) holds,
per slot, the probability of the shown item at that slot *given the items above it* (the random
recommender writes ``1 / (K - j)``): a conditional. Its product over slots ``0 .. k`` is the
probability of the slate's first ``k + 1`` items, which is what `RewardInteractionIPS` and
`SlateIPS` need. `IndependentIPS` and `PseudoInverse` need *marginals* (the probability that an
item lands at slot k at all; ``1 / K`` for a uniform logger); at ``L == 1`` the two coincide.

Bootstrap confidence intervals (`OffPolicyEstimator.estimate_ci`) resample rows, or whole groups
(e.g. sessions or users: pass ``groups``) with replacement, and take percentiles of the
replicated ratio. A reward model (`DoublyRobust`) is fitted once on the whole log; replicates
do not refit it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import ArrayLike

from recoworld.errors import ConfigError, ReplayDataError

_MAX_BOOT_CELLS = 4_000_000  # replicates x groups gathered per chunk of the bootstrap


# ---------------------------------------------------------------- input checks
def _numeric(values: ArrayLike, name: str, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ReplayDataError(f"{name} ({what}) is not numeric: {exc}") from None
    return arr


def _where(arr: np.ndarray, bad: np.ndarray) -> str:
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    pos = f"row {idx[0]}" + (f", slot {idx[1]}" if len(idx) > 1 else "")
    return f"{arr[idx].item()!r} at {pos}"


def check_rewards(rewards: ArrayLike, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    """``rewards`` as float64, finite, with at least one row and an allowed number of axes."""
    r = _numeric(rewards, "rewards", "the reward of each logged row")
    if r.ndim not in ndim or r.shape[0] == 0:
        shapes = " or ".join({1: "(n,)", 2: "(n, L)"}[d] for d in ndim)
        raise ReplayDataError(
            f"rewards have shape {r.shape}; expected a non-empty {shapes} array, one reward "
            "per logged row" + (" and slot" if 2 in ndim else "")
        )
    if not np.isfinite(r).all():
        raise ReplayDataError(
            f"rewards hold a NaN or infinite value ({_where(r, ~np.isfinite(r))}); fill or drop "
            "those rows"
        )
    return r


def check_propensity(
    values: ArrayLike, shape: tuple[int, ...], name: str, *, logging: bool, high: float = 1.0
) -> np.ndarray:
    """A propensity array of ``shape``: logging ones in (0, 1], target ones in [0, ``high``].

    Raises:
        ReplayDataError: naming ``name``, the bad value, its row (and slot) and the fix.
    """
    p = _numeric(values, name, "propensities")
    if p.shape != shape:
        raise ReplayDataError(
            f"{name} has shape {p.shape}; it must match rewards' shape {shape} (one probability "
            "per logged row and slot)"
        )
    low_ok = p > 0 if logging else p >= 0
    bad = ~(np.isfinite(p) & low_ok & (p <= (1.0 if logging else high)))
    if bad.any():
        if logging:
            fix = (
                "logging propensities must lie in (0, 1] (the log's 'propensity' column); a "
                "deterministic logger (propensity 1 everywhere) or a zero propensity cannot "
                "support off-policy evaluation"
            )
        else:
            fix = f"target probabilities must lie in [0, {high:g}]"
        raise ReplayDataError(f"{name} holds {_where(p, bad)}; {fix}")
    return p


def _as_slate(rewards: ArrayLike) -> np.ndarray:
    r = check_rewards(rewards, (1, 2))
    return r[:, None] if r.ndim == 1 else r


# ------------------------------------------------------------------ the base
class OffPolicyEstimator:
    """Base of every estimator: ``estimate = sum(num) / sum(den)`` over per-row terms.

    Subclasses implement ``terms(rewards, logging_propensity, target_propensity, **extra)``
    returning ``(num (n,), den (n,))``, and say what they take in three class attributes, so
    that runners over logs (`recoworld.replay.validation`) feed each its inputs without
    switching on types:

    Attributes:
        slate: False for single-item estimators (arrays ``(n,)``), True for slate ones
            (``(n, L)``).
        propensities: ``"conditional"`` (given the slots above; the log's column) or
            ``"marginal"`` (probability of the item at that slot at all).
        needs: names of the extra keyword arrays ``estimate`` takes.
    """

    slate: ClassVar[bool] = False
    propensities: ClassVar[str] = "conditional"
    needs: ClassVar[tuple[str, ...]] = ()

    def terms(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def estimate(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        **extra: Any,
    ) -> float:
        """The target policy's estimated mean reward per logged row.

        Args:
            rewards: ``(n,)`` (``(n, L)`` for slate estimators) rewards of the logged actions.
            logging_propensity: same shape, the logging policy's propensities, in (0, 1].
            target_propensity: same shape, the target's probabilities of the logged actions.
            **extra: estimator-specific arrays (see the subclass).

        Returns:
            The estimate (a float).
        """
        num, den = self.terms(rewards, logging_propensity, target_propensity, **extra)
        return _ratio(num.sum(), den.sum())

    def estimate_ci(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        *,
        groups: ArrayLike | None = None,
        n_bootstrap: int = 1000,
        alpha: float = 0.05,
        seed: int | None = 0,
        **extra: Any,
    ) -> tuple[float, float, float]:
        """The estimate and a percentile-bootstrap ``1 - alpha`` confidence interval.

        Args:
            rewards, logging_propensity, target_propensity, **extra: as `estimate`.
            groups: ``(n,)`` labels (e.g. session or user ids) to resample whole groups, which
                keeps the correlation inside a session; None resamples rows.
            n_bootstrap: replicates (>= 10).
            alpha: 1 - confidence level, in (0, 1).
            seed: seed of the bootstrap's `numpy.random.Generator`.

        Returns:
            ``(estimate, low, high)``.
        """
        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)):
            raise ConfigError(f"n_bootstrap={n_bootstrap!r} must be an integer >= 10")
        if n_bootstrap < 10:
            raise ConfigError(f"n_bootstrap={n_bootstrap} is too few; use at least 10 (e.g. 1000)")
        if not 0.0 < alpha < 1.0:
            raise ConfigError(f"alpha={alpha} must lie in (0, 1), e.g. 0.05 for a 95% interval")
        num, den = self.terms(rewards, logging_propensity, target_propensity, **extra)
        value = _ratio(num.sum(), den.sum())
        if groups is not None:
            g = np.asarray(groups)
            if g.shape != num.shape:
                raise ReplayDataError(
                    f"groups have shape {g.shape}; give one label per logged row {num.shape}"
                )
            _, inverse = np.unique(g, return_inverse=True)
            num = np.bincount(inverse, weights=num)
            den = np.bincount(inverse, weights=den)
        reps = bootstrap_ratios(num, den, n_bootstrap, np.random.default_rng(seed))
        low, high = np.nanquantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
        return value, float(low), float(high)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def bootstrap_ratios(
    num: np.ndarray, den: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n_bootstrap,)`` replicates of ``sum(num) / sum(den)`` over resampled units.

    Args:
        num, den: ``(g,)`` per-unit (row or group) sums.
        n_bootstrap: replicates.
        rng: the generator that draws the resamples.
    """
    g = num.shape[0]
    out = np.empty(n_bootstrap)
    chunk = max(1, _MAX_BOOT_CELLS // max(g, 1))
    for lo in range(0, n_bootstrap, chunk):  # chunks of replicates bound the memory
        hi = min(lo + chunk, n_bootstrap)
        idx = rng.integers(0, g, size=(hi - lo, g))
        d = den[idx].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo:hi] = np.where(d > 0, num[idx].sum(1) / d, np.nan)
    return out


def _column(values: ArrayLike) -> np.ndarray:
    """``(n, 1)`` as ``(n,)``; anything else unchanged (checked by the caller)."""
    a = np.asarray(values)
    return a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a


def _matrix(values: ArrayLike) -> np.ndarray:
    """``(n,)`` as ``(n, 1)``; anything else unchanged (checked by the caller)."""
    a = np.asarray(values)
    return a[:, None] if a.ndim == 1 else a


def _single(
    rewards: ArrayLike, logging_propensity: ArrayLike, target_propensity: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Checked single-item arrays: rewards ``(n,)`` and weights ``target / logging``."""
    r = check_rewards(_column(rewards))
    p0 = check_propensity(_column(logging_propensity), r.shape, "logging_propensity", logging=True)
    pe = check_propensity(_column(target_propensity), r.shape, "target_propensity", logging=False)
    return r, pe / p0


# -------------------------------------------------------- single-item estimators
@dataclass(frozen=True)
class IPS(OffPolicyEstimator):
    """Inverse propensity scoring: ``mean(w r)`` with ``w = target / logging``.

    Unbiased when every action the target may take has a positive logging propensity.
    """

    def terms(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(w r, 1)`` per row; arrays ``(n,)``."""
        _no_extra(self, extra)
        r, w = _single(rewards, logging_propensity, target_propensity)
        return w * r, np.ones_like(r)


@dataclass(frozen=True)
class ClippedIPS(OffPolicyEstimator):
    """IPS with the importance weight clipped: ``mean(min(w, max_weight) r)``.

    The clipped-propensity estimator of Saito et al. 2020 ("Unbiased Recommender Learning from
    Missing-Not-At-Random Implicit Feedback") replaces ``1 / p`` by ``1 / max(p, M)``; for a
    deterministic target that is this estimator with ``max_weight = 1 / M``. Clipping trades a
    bias toward 0 (for non-negative rewards) for a bounded variance.

    Attributes:
        max_weight: the largest importance weight kept (> 0).
    """

    max_weight: float = 10.0

    def __post_init__(self) -> None:
        m = self.max_weight
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not np.isfinite(m) or m <= 0:
            raise ConfigError(
                f"ClippedIPS(max_weight={m!r}): max_weight must be a positive finite number, "
                "e.g. max_weight=10.0"
            )

    def terms(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(min(w, max_weight) r, 1)`` per row; arrays ``(n,)``."""
        _no_extra(self, extra)
        r, w = _single(rewards, logging_propensity, target_propensity)
        return np.minimum(w, self.max_weight) * r, np.ones_like(r)


@dataclass(frozen=True)
class SNIPS(OffPolicyEstimator):
    """Self-normalised IPS: ``sum(w r) / sum(w)``.

    Invariant to rescaling the weights and always within the rewards' range; biased by
    ``O(1 / n)``, usually with much lower variance than `IPS`.
    """

    def terms(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(w r, w)`` per row; arrays ``(n,)``."""
        _no_extra(self, extra)
        r, w = _single(rewards, logging_propensity, target_propensity)
        return w * r, w


def _no_extra(est: OffPolicyEstimator, extra: dict[str, Any]) -> None:
    if extra:
        raise ConfigError(
            f"{type(est).__name__}.estimate got unexpected arrays {sorted(extra)}; it takes only "
            "rewards, logging_propensity and target_propensity"
        )


class RewardModel(Protocol):
    """A model of the expected reward of showing an item: ``fit`` returns a predictor."""

    def fit(self, item_ids: np.ndarray, rewards: np.ndarray) -> Any:
        """Fit on ``(n,)`` logged item ids and rewards; return ``predict(ids) -> same shape``."""
        ...


@dataclass(frozen=True)
class ItemMeanReward:
    """Per-item mean reward, shrunk toward the overall mean (an empirical-Bayes average).

    ``r_hat(i) = (sum of i's rewards + prior_strength * mean) / (count_i + prior_strength)``;
    unseen items get the overall mean.

    Attributes:
        prior_strength: pseudo-observations of the overall mean per item (>= 0).
    """

    prior_strength: float = 5.0

    def __post_init__(self) -> None:
        s = self.prior_strength
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not s >= 0:
            raise ConfigError(
                f"ItemMeanReward(prior_strength={s!r}) must be a number >= 0, e.g. 5.0"
            )

    def fit(self, item_ids: np.ndarray, rewards: np.ndarray) -> Any:
        """Fit on ``(n,)`` item ids (>= 0) and ``(n,)`` rewards; returns the predictor."""
        ids = np.asarray(item_ids, np.int64)
        r = np.asarray(rewards, np.float64)
        if ids.shape != r.shape or ids.ndim != 1 or (ids.size and ids.min() < 0):
            raise ReplayDataError(
                f"ItemMeanReward.fit needs (n,) item ids >= 0 matching (n,) rewards; got ids "
                f"{ids.shape} and rewards {r.shape}"
            )
        size = int(ids.max()) + 1 if ids.size else 1
        total = np.bincount(ids, weights=r, minlength=size)
        count = np.bincount(ids, minlength=size)
        mean = float(r.mean()) if r.size else 0.0
        table = (total + self.prior_strength * mean) / np.maximum(
            count + self.prior_strength, 1e-12
        )
        table[count == 0] = mean

        def predict(query: np.ndarray) -> np.ndarray:
            q = np.asarray(query, np.int64)
            inside = (q >= 0) & (q < size)
            return np.where(inside, table[np.clip(q, 0, size - 1)], mean)

        return predict


@dataclass(frozen=True)
class DoublyRobust(OffPolicyEstimator):
    """Doubly robust: ``mean(sum_a pi(a|x) r_hat(x, a) + w (r - r_hat(x, a_logged)))``.

    Unbiased when either the propensities or the reward model are right; the reward model
    (default `ItemMeanReward`) is fitted on the whole log (no cross-fitting; with shrinkage the
    in-sample bias is small), or its predictions are passed in.

    ``estimate`` takes, besides the common arrays (``(n,)``):

    - ``target_probabilities`` ``(n, K)``: the target's distribution over the K candidates;
    - ``action`` ``(n,)``: the logged candidate index;
    - ``candidate_ids`` ``(n, K)``: the candidates' item ids (for the reward model), or
      ``reward_predictions`` ``(n, K)``: the model's predictions, when fitted elsewhere.

    Attributes:
        reward_model: a `RewardModel`.
    """

    reward_model: RewardModel = field(default_factory=ItemMeanReward)
    needs: ClassVar[tuple[str, ...]] = ("target_probabilities", "action", "reward_predictions")

    def __post_init__(self) -> None:
        if not callable(getattr(self.reward_model, "fit", None)):
            raise ConfigError(
                f"DoublyRobust(reward_model={self.reward_model!r}) has no fit(item_ids, rewards) "
                "method; use recoworld.replay.ope.ItemMeanReward() or a RewardModel"
            )

    def terms(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        *,
        target_probabilities: ArrayLike | None = None,
        action: ArrayLike | None = None,
        candidate_ids: ArrayLike | None = None,
        reward_predictions: ArrayLike | None = None,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(dm + w (r - r_hat), 1)`` per row (see the class for the extra arrays)."""
        _no_extra(self, extra)
        r, w = _single(rewards, logging_propensity, target_propensity)
        n = r.shape[0]
        if target_probabilities is None or action is None:
            raise ReplayDataError(
                "DoublyRobust.estimate needs target_probabilities (n, K) and action (n,) besides "
                "rewards and propensities"
            )
        pi = _numeric(target_probabilities, "target_probabilities", "(n, K)")
        if pi.ndim != 2 or pi.shape[0] != n:
            raise ReplayDataError(
                f"target_probabilities have shape {pi.shape}; expected ({n}, K), one "
                "distribution over the candidates per logged row"
            )
        a = np.asarray(action)
        if a.shape != (n,) or a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= pi.shape[1]:
            raise ReplayDataError(
                f"action must be ({n},) integer candidate indices in [0, {pi.shape[1]}); got "
                f"shape {a.shape}, dtype {a.dtype}"
            )
        if reward_predictions is not None:
            r_hat = _numeric(reward_predictions, "reward_predictions", "(n, K)")
        elif candidate_ids is not None:
            ids = np.asarray(candidate_ids)
            if ids.shape != pi.shape:
                raise ReplayDataError(
                    f"candidate_ids have shape {ids.shape}; expected {pi.shape} like "
                    "target_probabilities"
                )
            predict = self.reward_model.fit(ids[np.arange(n), a], r)
            r_hat = predict(ids)
        else:
            raise ReplayDataError(
                "DoublyRobust.estimate needs candidate_ids (n, K) for its reward model, or "
                "reward_predictions (n, K)"
            )
        if r_hat.shape != pi.shape or not np.isfinite(r_hat).all():
            raise ReplayDataError(
                f"reward predictions have shape {r_hat.shape} (expected {pi.shape}) or hold NaN"
            )
        dm = (pi * r_hat).sum(1)
        return dm + w * (r - r_hat[np.arange(n), a]), np.ones(n)


# -------------------------------------------------------------- slate estimators
def _slate_inputs(
    rewards: ArrayLike, logging_propensity: ArrayLike, target_propensity: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked slate arrays ``(n, L)`` (an ``(n,)`` input is one slot)."""
    r = _as_slate(rewards)
    p0 = check_propensity(_matrix(logging_propensity), r.shape, "logging_propensity", logging=True)
    pe = check_propensity(_matrix(target_propensity), r.shape, "target_propensity", logging=False)
    return r, p0, pe


@dataclass(frozen=True)
class IndependentIPS(OffPolicyEstimator):
    """Independent (item-position) IPS: ``mean(sum_k (q_k / p_k) r_k)``.

    Propensities are *marginals*: ``p_k`` (``q_k``) is the probability that the logging
    (target) policy puts the shown item at slot k at all, e.g. ``1 / K`` for a uniform logger.
    Unbiased when slot k's reward depends only on the item at slot k.
    Arrays ``(n, L)`` (``(n,)`` is read as ``L = 1``).
    """

    slate: ClassVar[bool] = True
    propensities: ClassVar[str] = "marginal"

    def terms(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        _no_extra(self, extra)
        r, p0, pe = _slate_inputs(rewards, logging_propensity, target_propensity)
        return (pe / p0 * r).sum(1), np.ones(r.shape[0])


@dataclass(frozen=True)
class RewardInteractionIPS(OffPolicyEstimator):
    """Reward-interaction IPS: ``mean(sum_k (prod_{j<=k} q_j / p_j) r_k)``.

    Propensities are *conditionals* (the log's ``propensity`` column): the probability of the
    item at slot j given the items above it, so the product over ``j <= k`` is the probability
    of the slate's top ``k + 1``. Unbiased when slot k's reward depends only on slots ``<= k``
    (a user who scans from the top). Arrays ``(n, L)``.
    """

    slate: ClassVar[bool] = True
    propensities: ClassVar[str] = "conditional"

    def terms(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        _no_extra(self, extra)
        r, p0, pe = _slate_inputs(rewards, logging_propensity, target_propensity)
        return (np.cumprod(pe / p0, axis=1) * r).sum(1), np.ones(r.shape[0])


@dataclass(frozen=True)
class SlateIPS(OffPolicyEstimator):
    """Whole-slate IPS: ``mean((prod_k q_k / p_k) sum_k r_k)`` with conditional propensities.

    Unbiased for any user behaviour; its weights grow with the number of slates, so it needs
    small candidate sets or huge logs. Arrays ``(n, L)``.
    """

    slate: ClassVar[bool] = True
    propensities: ClassVar[str] = "conditional"

    def terms(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        _no_extra(self, extra)
        r, p0, pe = _slate_inputs(rewards, logging_propensity, target_propensity)
        return np.prod(pe / p0, axis=1) * r.sum(1), np.ones(r.shape[0])


def pseudo_inverse_weights(
    target_propensity: np.ndarray, target_item_mass: np.ndarray, n_candidates: np.ndarray
) -> np.ndarray:
    """PI weights of logged slates under a uniform logger of L distinct of m candidates.

    With ``q(j, a)`` the target's marginal probability of candidate a at slot j and
    ``Q(a) = sum_j q(j, a)``, the weight of slate s is
    ``sum_j [alpha q(j, s_j) + beta (Q(s_j) - q(j, s_j)) + gamma]`` with
    ``alpha = (m - 1)(m - L + 1) / (m - L)``, ``beta = (m - 1) / (m - L)`` and
    ``gamma = -(L - 1) m / (L (m - L))``: the unique weight linear in the slate's
    (slot, item) indicators whose expectation under the uniform logger reproduces the target's
    value of every additive reward, i.e. ``q^T Gamma^+ 1_s`` of Swaminathan et al. 2017.
    At ``L = 1`` it is ``m q``, the IPS weight.

    Args:
        target_propensity: ``(n, L)`` ``q(j, s_j)``.
        target_item_mass: ``(n, L)`` ``Q(s_j)``.
        n_candidates: ``(n,)`` m per row (> L).

    Returns:
        ``(n,)`` weights.
    """
    n_slots = target_propensity.shape[1]
    m = n_candidates.astype(np.float64)[:, None]
    big_l = float(n_slots)
    alpha = (m - 1.0) * (m - big_l + 1.0) / (m - big_l)
    beta = (m - 1.0) / (m - big_l)
    gamma = -(big_l - 1.0) * m / (big_l * (m - big_l))
    q, mass = target_propensity, target_item_mass
    return (alpha * q + beta * (mass - q) + gamma).sum(1)


@dataclass(frozen=True)
class PseudoInverse(OffPolicyEstimator):
    """The pseudo-inverse estimator (Swaminathan et al. 2017) for a uniformly random logger.

    ``mean(w(s) sum_k r_k)`` with the closed-form weight of `pseudo_inverse_weights`. Unbiased
    when the slate's reward is a sum of per-(slot, item) terms; its variance grows only
    linearly in the slate size. Implemented for the uniform logger of "L distinct candidates
    out of K" (every context's ``Gamma`` is then the same known matrix, inverted in closed
    form); a non-uniform logger needs its pairwise slot-item marginals, which a log does not
    hold, and is refused.

    ``estimate`` takes ``(n, L)`` arrays: ``logging_propensity`` the logger's *marginals*
    (``1 / K`` in every slot of a row), ``target_propensity`` the target's marginals
    ``q(k, s_k)``, and the keyword ``target_item_mass`` ``(n, L)``: the probability that the
    target shows item ``s_k`` in any slot, ``sum_j q(j, s_k)``.
    """

    slate: ClassVar[bool] = True
    propensities: ClassVar[str] = "marginal"
    needs: ClassVar[tuple[str, ...]] = ("target_item_mass",)

    def terms(
        self,
        rewards: ArrayLike,
        logging_propensity: ArrayLike,
        target_propensity: ArrayLike,
        *,
        target_item_mass: ArrayLike | None = None,
        **extra: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        _no_extra(self, extra)
        r, p0, pe = _slate_inputs(rewards, logging_propensity, target_propensity)
        n, n_slots = r.shape
        if target_item_mass is None:
            if n_slots > 1:
                raise ReplayDataError(
                    "PseudoInverse.estimate needs target_item_mass (n, L) for slates: the "
                    "target's probability of showing each logged item in any slot"
                )
            mass = pe
        else:
            # a Monte Carlo estimate of the mass (a sum over slots) may exceed 1; never L
            mass = check_propensity(
                _matrix(target_item_mass),
                r.shape,
                "target_item_mass",
                logging=False,
                high=float(n_slots),
            )
        m = 1.0 / p0[:, 0]
        uniform = np.isclose(p0, p0[:, :1], rtol=1e-5, atol=0).all(1)
        whole = np.isclose(m, np.round(m), rtol=1e-5, atol=0) & (np.round(m) > n_slots)
        if n_slots == 1:
            whole = np.ones(n, bool)  # any logger at L = 1: the weight is q / p
        bad = ~(uniform & whole)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ReplayDataError(
                f"PseudoInverse needs a uniformly random logger of L={n_slots} distinct items "
                f"out of K > L candidates: logging_propensity (marginals) must be 1/K in every "
                f"slot, but row {row} has {p0[row].tolist()}; use RewardInteractionIPS or "
                "SlateIPS for other loggers"
            )
        if n_slots == 1:
            w = pe[:, 0] / p0[:, 0]
        else:
            w = pseudo_inverse_weights(pe, mass, np.round(m))
        return w * r.sum(1), np.ones(n)


ESTIMATORS: dict[str, type[OffPolicyEstimator]] = {
    "ips": IPS,
    "clipped_ips": ClippedIPS,
    "snips": SNIPS,
    "dr": DoublyRobust,
    "iips": IndependentIPS,
    "rips": RewardInteractionIPS,
    "slate_ips": SlateIPS,
    "pi": PseudoInverse,
}


# ------------------------------------------------- Plackett-Luce slate probabilities
def plackett_luce_sample(
    probabilities: np.ndarray, slate_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Slates drawn item by item without replacement from ``probabilities`` (Gumbel top-k).

    Args:
        probabilities: ``(n, K)`` a distribution over each row's candidates, with at least
            ``slate_size`` positive entries per row.
        slate_size: L.
        rng: the generator.

    Returns:
        ``(n, L)`` int64 candidate indices, best first.
    """
    with np.errstate(divide="ignore"):
        keys = np.log(probabilities) + rng.gumbel(size=probabilities.shape)
    part = np.argpartition(-keys, slate_size - 1, axis=1)[:, :slate_size]
    order = np.argsort(-np.take_along_axis(keys, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1).astype(np.int64)


def plackett_luce_conditionals(probabilities: np.ndarray, slates: np.ndarray) -> np.ndarray:
    """``(n, L)`` probability of each slot's candidate given the slots above it.

    ``p[s_k] / (1 - sum_{j<k} p[s_j])``: what `RewardInteractionIPS` and `SlateIPS` take (and
    what recommenders write in the log's ``propensity`` column).

    Args:
        probabilities: ``(n, K)``; slates: ``(n, L)`` candidate indices.
    """
    p = np.take_along_axis(probabilities, slates, 1)
    above = np.cumsum(p, 1) - p
    return p / np.maximum(1.0 - above, 1e-300)


def plackett_luce_marginals(
    probabilities: np.ndarray,
    slates: np.ndarray,
    rng: np.random.Generator | None = None,
    n_samples: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Marginal slot probabilities of the logged slates' items under Plackett-Luce sampling.

    Returns ``q[:, k]``, the probability that the policy puts candidate ``slates[:, k]`` at
    slot k, and ``mass[:, k]``, the probability that it shows that candidate in any of the L
    slots: what `IndependentIPS` and `PseudoInverse` take. Exact for uniform rows, for
    ``L <= 2``, and for ``L == 3`` with ``K <= 100``; otherwise a Rao-Blackwellised Monte Carlo
    average over ``n_samples`` sampled prefixes per row: ``q(k, a)`` is the mean over prefixes
    of ``P(a at slot k | prefix) = 1[a not in prefix] p_a / (1 - p(prefix))``. It is unbiased,
    so estimators linear in ``q`` (IIPS and PI, in the target's ``q``) stay unbiased.

    Args:
        probabilities: ``(n, K)``; slates: ``(n, L)`` candidate indices.
        rng: generator of the Monte Carlo draws (needed when they are used).
        n_samples: prefixes sampled per row for the Monte Carlo average.

    Returns:
        ``(q (n, L), mass (n, L))`` float64.
    """
    n, k = probabilities.shape
    n_slots = slates.shape[1]
    p = np.take_along_axis(probabilities, slates, 1)
    q = np.empty((n, n_slots))
    q[:, 0] = p[:, 0]
    if n_slots == 1:
        return q, q.copy()
    uniform = np.isclose(probabilities, probabilities[:, :1], rtol=1e-9, atol=0).all(1)
    mass = np.empty((n, n_slots))
    q[uniform] = 1.0 / k  # every candidate at every slot with probability 1 / K
    mass[uniform] = n_slots / k
    rows = np.flatnonzero(~uniform)
    if rows.size == 0:
        return q, mass
    pr, sl = probabilities[rows], slates[rows]
    if n_slots == 2 or (n_slots == 3 and k <= 100):
        q[rows], mass[rows] = _pl_exact(pr, sl)
    else:
        if rng is None:
            raise ConfigError("plackett_luce_marginals needs rng= for slates of 4 or more slots")
        q[rows], mass[rows] = _pl_sampled(pr, sl, rng, n_samples)
    return q, mass


def _pl_exact(probabilities: np.ndarray, slates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact marginals for L = 2 or 3: ``q(1, b) = p_b sum_{a != b} p_a / (1 - p_a)``;
    ``q(2, c) = p_c`` times the sum of ``p_a p_b / ((1 - p_a)(1 - p_a - p_b))`` over pairs
    ``a != b``, both ``!= c``."""
    n, k = probabilities.shape
    ratio = probabilities / np.maximum(1.0 - probabilities, 1e-300)
    table = [probabilities, probabilities * (ratio.sum(1, keepdims=True) - ratio)]
    if slates.shape[1] == 3:
        third = np.empty_like(probabilities)
        chunk = max(1, _MAX_BOOT_CELLS // max(k * k, 1))
        idx = np.arange(k)
        for lo in range(0, n, chunk):  # (rows, K, K) pair tables, a chunk at a time
            p = probabilities[lo : lo + chunk]
            rest = np.maximum(1.0 - p[:, :, None] - p[:, None, :], 1e-300)
            pair = ratio[lo : lo + chunk, :, None] * p[:, None, :] / rest
            pair[:, idx, idx] = 0.0
            total = pair.sum((1, 2))[:, None]
            third[lo : lo + chunk] = p * (total - pair.sum(2) - pair.sum(1))
        table.append(third)
    at = np.stack(table, 1)  # (n, L, K): q(slot, candidate)
    q = np.stack([at[np.arange(n), j, slates[:, j]] for j in range(slates.shape[1])], 1)
    mass = np.take_along_axis(at.sum(1), slates, 1)
    return q, mass


def _pl_prefixes(
    probabilities: np.ndarray, m: int, length: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n, m, length)`` Plackett-Luce prefixes, m per row.

    Each item is drawn by inverse CDF (one binary search in the rows' stacked CDFs; callers
    pass a cache-sized chunk of rows) and redrawn while it repeats an earlier one, which is
    exactly sampling from the remaining mass; rows where that keeps failing (nearly all mass
    already drawn) finish with a Gumbel draw over the remaining items.
    """
    n, k = probabilities.shape
    cdf = np.cumsum(probabilities, 1)
    stacked = (cdf / cdf[:, -1:] + np.arange(n)[:, None]).ravel()  # row i spans (i, i + 1]
    row = np.repeat(np.arange(n), m)
    draws = np.empty((n * m, length), np.int64)
    for j in range(length):
        todo = np.arange(n * m)
        for _ in range(30):
            at = row[todo]
            lo = np.searchsorted(stacked, at + rng.random(todo.size), side="right") - at * k
            lo = np.minimum(lo, k - 1)
            dup = (draws[todo, :j] == lo[:, None]).any(1)
            draws[todo[~dup], j] = lo[~dup]
            todo = todo[dup]
            if todo.size == 0:
                break
        if todo.size:  # the rare rows whose remaining mass is tiny
            rest = probabilities[row[todo]].copy()
            np.put_along_axis(rest, draws[todo, :j], 0.0, 1)
            with np.errstate(divide="ignore"):
                keys = np.log(rest) + rng.gumbel(size=rest.shape)
            draws[todo, j] = keys.argmax(1)
    return draws.reshape(n, m, length)


def _pl_sampled(
    probabilities: np.ndarray, slates: np.ndarray, rng: np.random.Generator, n_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rao-Blackwellised Monte Carlo marginals (see `plackett_luce_marginals`)."""
    n = probabilities.shape[0]
    n_slots = slates.shape[1]
    q_all = np.zeros((n, n_slots, n_slots))  # [row, slot, logged item j]
    chunk = max(1, _MAX_BOOT_CELLS // (n_samples * n_slots * n_slots))
    for lo in range(0, n, chunk):  # chunks of rows bound the (rows, samples, L, L) arrays
        pr, sl = probabilities[lo : lo + chunk], slates[lo : lo + chunk]
        r, m = pr.shape[0], n_samples
        draw = _pl_prefixes(pr, m, n_slots - 1, rng)
        p_draw = np.take_along_axis(pr[:, None, :], draw, 2)
        # remaining mass before slot s (s = 0 .. L-1) and whether item j is in that prefix
        rem = 1.0 - np.concatenate([np.zeros((r, m, 1)), np.cumsum(p_draw, 2)], 2)
        seen = draw[:, :, :, None] == sl[:, None, None, :]  # (r, m, L-1, L)
        in_prefix = np.concatenate(
            [np.zeros((r, m, 1, n_slots), bool), np.cumsum(seen, 2) > 0], 2
        )  # (r, m, L, L): item j already shown before slot s
        p_logged = np.take_along_axis(pr, sl, 1)[:, None, None, :]
        cond = np.where(in_prefix, 0.0, p_logged / np.maximum(rem, 1e-300)[:, :, :, None])
        q_all[lo : lo + chunk] = cond.mean(1)
    q = q_all[:, np.arange(n_slots), np.arange(n_slots)]
    return q, q_all.sum(1)
