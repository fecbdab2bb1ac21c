"""Target policies for off-policy evaluation: distributions over each user's K candidates,
from which slates are drawn item by item without replacement (Plackett-Luce), so the
probability of any logged slate is known slot by slot."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recoworld.catalog import Catalog
from recoworld.errors import ConfigError, ReplayDataError
from recoworld.replay.ope import (
    plackett_luce_conditionals,
    plackett_luce_sample,
)
from recoworld.types import Recommendation

Progress = Callable[[int, int, str], None]


@runtime_checkable
class StochasticPolicy(Protocol):
    """A policy that exposes its action probabilities (what off-policy evaluation needs).

    ``probabilities(obs, info)`` returns ``(n, K)``: each user's distribution over its K
    candidates (``info["candidate_ids"]``). Slates are drawn from it by Plackett-Luce.
    """

    def probabilities(
        self, obs: dict[str, np.ndarray] | None, info: dict[str, Any]
    ) -> np.ndarray: ...


def _check_slate_size(slate_size: Any) -> int:
    if isinstance(slate_size, bool) or not isinstance(slate_size, (int, np.integer)):
        raise ConfigError(f"slate_size={slate_size!r} must be a positive integer")
    if slate_size < 1:
        raise ConfigError(f"slate_size={slate_size} must be >= 1")
    return int(slate_size)


class _PlackettLuce:
    """`recommend` for a `StochasticPolicy`: a Plackett-Luce slate with its conditionals."""

    slate_size: int
    rng: np.random.Generator

    def probabilities(self, obs: dict[str, np.ndarray] | None, info: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        """A slate drawn from `probabilities`; propensities are the slots' conditionals."""
        p = self.probabilities(obs, info)
        idx = plackett_luce_sample(p, self.slate_size, self.rng)
        prop = plackett_luce_conditionals(p, idx)
        return Recommendation(idx[:, 0] if self.slate_size == 1 else idx, prop)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless."""


class UniformPolicy(_PlackettLuce):
    """Uniformly random slates of distinct candidates (the standard logging policy).

    Args:
        slate_size: L, for `recommend`.
        seed: seed of its generator.
    """

    def __init__(self, slate_size: int = 1, seed: int | None = None) -> None:
        self.slate_size = _check_slate_size(slate_size)
        self.rng = np.random.default_rng(seed)

    def probabilities(self, obs: dict[str, np.ndarray] | None, info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` all ``1 / K``."""
        cand = np.asarray(info["candidate_ids"])
        return np.full(cand.shape, 1.0 / cand.shape[1])


SOFTMAX_FEATURES = ("popularity", "quality")


class SoftmaxPolicy(_PlackettLuce):
    """Softmax over a catalog column of the candidates: ``p ∝ exp(score / temperature)``.

    Decides from ``info["candidate_ids"]`` and the catalog only, so it can be evaluated on a
    log as well as in the simulator.

    Args:
        catalog: the catalog the candidate ids index.
        feature: ``"popularity"`` (score = log popularity) or ``"quality"``.
        temperature: > 0; small values approach the greedy policy.
        slate_size: L, for `recommend`.
        seed: seed of its generator.
    """

    def __init__(
        self,
        catalog: Catalog,
        feature: str = "popularity",
        temperature: float = 1.0,
        slate_size: int = 1,
        seed: int | None = None,
    ) -> None:
        if feature not in SOFTMAX_FEATURES:
            raise ConfigError(f"feature={feature!r}; choose one of {SOFTMAX_FEATURES}")
        t = temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (t > 0 and t < math.inf):
            raise ConfigError(f"temperature={t!r} must be a positive finite number, e.g. 1.0")
        self.score = np.log(catalog.popularity) if feature == "popularity" else catalog.quality
        self.score = np.asarray(self.score, np.float64)
        self.feature, self.temperature = feature, float(t)
        self.slate_size = _check_slate_size(slate_size)
        self.rng = np.random.default_rng(seed)

    def probabilities(self, obs: dict[str, np.ndarray] | None, info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` softmax of the candidates' scores."""
        cand = np.asarray(info["candidate_ids"])
        if cand.size and (cand.min() < 0 or cand.max() >= self.score.shape[0]):
            raise ReplayDataError(
                f"candidate ids span [{cand.min()}, {cand.max()}] but the catalog has "
                f"{self.score.shape[0]} items; evaluate with the catalog the log was made with"
            )
        z = self.score[cand] / self.temperature
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)
