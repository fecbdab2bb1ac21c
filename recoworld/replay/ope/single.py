"""Single-item estimators: IPS, clipped IPS, SNIPS, doubly robust (with a reward model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import ArrayLike

from recoworld.errors import ConfigError, ReplayDataError
from recoworld.replay.ope.base import (
    OffPolicyEstimator,
    _numeric,
    _single,
)


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
