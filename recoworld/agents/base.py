"""The `Recommender` protocol and the two recommenders that ship with the core.

Recommenders are always batched: ``obs`` is a dict of arrays with a leading user axis and
``info`` the matching dict of arrays (a vector env's, or a single env's wrapped by
`recoworld.agents.base.batch_single`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from recoworld.catalog import Catalog
from recoworld.errors import ConfigError
from recoworld.types import Recommendation


@runtime_checkable
class Recommender(Protocol):
    """Picks slates for a batch of users.

    ``recommend(obs, info)`` returns a `Recommendation` whose ``action`` lies in the env's
    (batched) action space and whose ``propensity`` ``(n, slate_size)`` holds, for slot j, the
    probability of the shown item at slot j *given the items shown in slots above it* (so the
    product over slots is the probability of the whole slate; at ``slate_size == 1`` it is the
    plain probability). Off-policy estimators (`recoworld.replay.ope`) rely on this convention.
    Optional: ``score(obs, info) -> (n, K)``, ``update(obs, info, action, feedback)`` for
    learners (``feedback`` is the step's ``info``: clicks, watch time, slate ids),
    ``reset(mask)`` to forget users ``mask`` (bool ``(n,)``; all when None), and
    ``select(keep)`` to keep only rows ``keep`` of per-user state when a runner drops finished
    users from its batch.
    """

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation: ...


def _slate_size(action_space: spaces.Space[Any]) -> int:
    if isinstance(action_space, spaces.Discrete):
        return 1
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(action_space.nvec.shape[0])
    raise ConfigError(
        f"action space {action_space} is not Discrete/MultiDiscrete; use "
        "action_type='indices' for this recommender"
    )


def _format(idx: np.ndarray, slate_size: int) -> np.ndarray:
    return idx[:, 0] if slate_size == 1 else idx


class RandomRecommender:
    """Uniformly random slates without repeats; propensity of the item at slot j given the
    slots above is ``1 / (K - j)`` (sampling without replacement; its marginal is ``1 / K``).

    Args:
        action_space: the single env's action space (``Discrete`` / ``MultiDiscrete``).
        seed: seed of its `numpy.random.Generator`.
    """

    def __init__(self, action_space: spaces.Space[Any], seed: int | None = None) -> None:
        self.slate_size = _slate_size(action_space)
        if isinstance(action_space, spaces.Discrete):
            self.k = int(action_space.n)
        else:
            self.k = int(action_space.nvec[0])  # type: ignore[attr-defined]
        self.rng = np.random.default_rng(seed)

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        return self.rng.random((obs["candidates"].shape[0], self.k))

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        n = obs["candidates"].shape[0]
        idx = np.argsort(self.score(obs, info), axis=1)[:, : self.slate_size]
        prop = np.broadcast_to(1.0 / (self.k - np.arange(self.slate_size)), (n, self.slate_size))
        return Recommendation(_format(idx, self.slate_size), prop.copy())

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless."""


class PopularityRecommender:
    """Shows the most popular candidates the user has not been shown recently.

    Remembers, per user, the last ``memory`` items shown (from ``info["slate_ids"]``) and skips
    them, as a production "most popular, unseen" list does; ``memory=0`` re-shows the same top
    items every step. A row whose ``info["user_id"]`` changes (a vector env's autoreset) starts
    with an empty memory. Deterministic (propensity 1).

    Args:
        action_space: the single env's action space.
        catalog: the env's catalog (``env.unwrapped.catalog``).
        memory: shown items remembered per user.
    """

    def __init__(self, action_space: spaces.Space[Any], catalog: Catalog, memory: int = 30) -> None:
        if memory < 0:
            raise ConfigError(f"memory={memory} must be >= 0")
        self.slate_size = _slate_size(action_space)
        self.log_pop = np.log(catalog.popularity)
        self.memory = memory
        self._shown: np.ndarray | None = None
        self._users: np.ndarray | None = None

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        cand = np.asarray(info["candidate_ids"])
        n = cand.shape[0]
        score = self.log_pop[cand]
        if self.memory:
            if self._shown is None or self._shown.shape[0] != n:
                self._shown = np.full((n, self.memory), -1, np.int64)
                self._users = None
            last = np.asarray(info["slate_ids"]).reshape(n, -1)
            if "user_id" in info:
                users = np.asarray(info["user_id"]).reshape(n)
                if self._users is not None:
                    new = users != self._users
                    self._shown[new] = -1
                    last = np.where(new[:, None], -1, last)
                self._users = users.copy()
            keep = self.memory - last.shape[1]
            self._shown = np.concatenate([last, self._shown[:, : max(keep, 0)]], 1)[
                :, : self.memory
            ]
            seen = (cand[:, :, None] == self._shown[:, None, :]).any(2)
            score = score - 1e3 * seen
        return score

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        score = self.score(obs, info)
        idx = np.argsort(-score, axis=1, kind="stable")[:, : self.slate_size]
        return Recommendation(_format(idx, self.slate_size), np.ones(idx.shape), True)

    def select(self, keep: np.ndarray) -> None:
        """Keep only rows ``keep`` of the per-user memory (a runner compacted its batch)."""
        if self._shown is not None:
            self._shown = self._shown[keep]
        if self._users is not None:
            self._users = self._users[keep]

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget what users ``mask`` (all when None) were shown."""
        if self._shown is None:
            return
        if mask is None:
            self._shown = self._users = None
        else:
            self._shown[np.asarray(mask)] = -1


def batch_single(
    obs: dict[str, Any], info: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Add a leading user axis to a single env's ``obs`` and ``info``."""
    return (
        {k: np.asarray(v)[None] for k, v in obs.items()},
        {k: np.asarray(v)[None] for k, v in info.items()},
    )


RecommenderFactory = Callable[[Any, "int | None"], Recommender]
RECOMMENDERS: dict[str, RecommenderFactory] = {}


def register_recommender(name: str, factory: RecommenderFactory) -> None:
    """Make ``make_recommender(name, env, seed)`` build ``factory(env, seed)``."""
    RECOMMENDERS[name] = factory


def env_action_space(env: Any) -> spaces.Space[Any]:
    """The single-user action space of a single or vector env."""
    return getattr(env, "single_action_space", None) or env.action_space


def make_recommender(name: str, env: Any, seed: int | None = None) -> Recommender:
    """A registered recommender by name for ``env`` (single or vector); unknown names list the
    valid ones."""
    _load_builtin_agents()
    try:
        factory = RECOMMENDERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown recommender {name!r}; choose one of {sorted(RECOMMENDERS)}"
        ) from None
    return factory(env, seed)


def _load_builtin_agents() -> None:
    """Import the agent modules that register themselves (lazily, to keep imports light)."""
    import importlib

    for module in BUILTIN_AGENT_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a module not written yet, or a missing extra
            if exc.name != module:
                raise


# modules under recoworld.agents that call register_recommender at import time
BUILTIN_AGENT_MODULES: list[str] = [
    "recoworld.agents.baselines",
    "recoworld.agents.bandits",
    "recoworld.agents.instruction",
    "recoworld.agents.llm",  # imports no openai until an LLMRecommender is built
]

register_recommender("random", lambda env, seed: RandomRecommender(env_action_space(env), seed))
register_recommender(
    "popularity",
    lambda env, seed: PopularityRecommender(env_action_space(env), env.unwrapped.catalog),
)
