"""What every estimator shares: input checks, the `OffPolicyEstimator` base, the bootstrap."""

from __future__ import annotations

from typing import Any, ClassVar

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
