"""Slate estimators: independent and reward-interaction IPS, slate IPS, pseudo-inverse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from recoworld.errors import ReplayDataError
from recoworld.replay.ope.base import (
    OffPolicyEstimator,
    _as_slate,
    _matrix,
    check_propensity,
)
from recoworld.replay.ope.single import IPS, SNIPS, ClippedIPS, DoublyRobust, _no_extra


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
