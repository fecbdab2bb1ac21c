"""Exploration reward terms after Chen et al. (2021), "Values of User Exploration in
Recommender Systems": intra-list diversity, novelty and serendipity, as a reward wrapper.

Per user and step (all computed from what a log holds: the slate shown, the item clicked):

- **diversity**: ``1 - mean pairwise topic similarity`` of the slate, with the similarity of
  two items 1 when they share a topic and 0 otherwise, i.e. the share of item pairs whose
  topics differ (`recoworld.metrics.topic_diversity`); 0 for a slate of fewer than 2 items.
- **novelty**: the mean self-information ``-log2 p(i)`` of the shown items, with ``p(i)`` the
  share of the users seen so far that consumed (clicked) item i, from running counts kept by
  the tracker (an item nobody consumed gets the floor ``1 / (10 n_items)`` of
  `recoworld.metrics.self_information`), divided by ``log2(10 n_items)`` so the term lies in
  ``[0, 1]`` like the other two.
- **serendipity**: 1 when the user clicked an item whose topic it had never consumed before
  (the topics it clicked since its episode began), else 0.

`ExplorationTracker` computes these terms for a batch of users (vectorised: no per-user Python
loop) and can be fed by any runner or recommender; `ExplorationReward` (single env) and
`VectorExplorationReward` (vector env) add ``w_div * diversity + w_nov * novelty + w_ser *
serendipity`` to the env's reward and report each term in ``info`` (``exploration_diversity``,
``exploration_novelty``, ``exploration_serendipity``) and the env's own reward as
``env_reward``. All weights default to 0 (DESIGN.md: NoveltySeeking-v0's novelty/diversity
terms come from this wrapper, off unless asked for), so a wrapper with default weights only
measures. `exploration_reward(env, ...)` picks the right wrapper.

Example:
    >>> import gymnasium as gym
    >>> import recoworld
    >>> env = exploration_reward(
    ...     gym.make("recoworld/NoveltySeeking-v0", n_items=200, num_candidates=10),
    ...     diversity=0.5,
    ... )
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> 0.0 <= info["exploration_diversity"] <= 1.0
    True
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper

from recoworld import metrics
from recoworld.catalog import Catalog
from recoworld.errors import ConfigError

TERMS = ("diversity", "novelty", "serendipity")


@dataclass(frozen=True, slots=True)
class ExplorationWeights:
    """Weights of the exploration terms added to the env's reward (all 0 by default).

    Attributes:
        diversity: per unit of intra-list topic diversity of the slate (in ``[0, 1]``).
        novelty: per unit of normalised self-information of the slate (in ``[0, 1]``).
        serendipity: per click on a topic the user had never consumed (0 or 1 per step).
    """

    diversity: float = 0.0
    novelty: float = 0.0
    serendipity: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ConfigError(f"exploration weight {f.name}={v!r} must be a finite number")
            if v < 0:
                raise ConfigError(
                    f"exploration weight {f.name}={v!r} is negative; the terms reward "
                    "exploration, so use a weight >= 0 (0 turns the term off)"
                )

    @property
    def active(self) -> bool:
        """Whether any term changes the reward."""
        return any(getattr(self, f.name) for f in fields(self))


class ExplorationTracker:
    """Running state and batched computation of the three exploration terms.

    Keeps, per row (one user at a time per row): the topics the row's user consumed this
    episode and the items it consumed (so each user counts once per item); globally: how many
    distinct users consumed each item and how many users were seen.

    Args:
        catalog: the env's catalog (topics and size).
        n: rows (users stepped together).
    """

    def __init__(self, catalog: Catalog, n: int) -> None:
        self.catalog = catalog
        self.n = n
        self.topic = np.asarray(catalog.topic, np.int64)
        self.n_items, self.n_topics = catalog.n_items, catalog.n_topics
        self.max_info = float(np.log2(10 * self.n_items))
        self.item_users = np.zeros(self.n_items, np.int64)  # distinct consumers per item
        self.users_seen = 0
        self.consumed_topics = np.zeros((n, self.n_topics), bool)
        self.consumed_items = np.zeros((n, self.n_items), bool)
        self.user_id = np.full(n, -1, np.int64)

    def start_users(self, rows: np.ndarray) -> None:
        """New users in ``rows`` (bool ``(n,)`` or indices): forget the rows' consumption."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        self.consumed_topics[rows] = False
        self.consumed_items[rows] = False
        self.users_seen += int(rows.size)

    def observe_users(self, user_id: np.ndarray) -> None:
        """Start the rows whose ``info["user_id"]`` ``(n,)`` changed (a new episode)."""
        uid = np.asarray(user_id, np.int64).reshape(self.n)
        changed = uid != self.user_id
        if changed.any():
            self.start_users(changed)
        self.user_id = uid.copy()

    def item_probability(self) -> np.ndarray:
        """``(n_items,)`` share of the users seen so far who consumed each item."""
        return self.item_users / max(self.users_seen, 1)

    def terms(self, slate_ids: np.ndarray, clicked: np.ndarray) -> dict[str, np.ndarray]:
        """The three terms of one step, then the consumption counts updated by its clicks.

        Args:
            slate_ids: ``(n, L)`` item ids shown (-1 for an empty slot or nothing shown).
            clicked: ``(n,)`` item clicked, -1 for none.

        Returns:
            ``{"diversity", "novelty", "serendipity"}``, each ``(n,)`` float64 in ``[0, 1]``.
        """
        slate = np.asarray(slate_ids, np.int64).reshape(self.n, -1)
        clicked = np.asarray(clicked, np.int64).reshape(self.n)
        valid = slate >= 0
        topics = np.where(valid, self.topic[np.maximum(slate, 0)], 0)
        diversity = metrics.topic_diversity(topics, self.n_topics, valid)
        info = metrics.self_information(slate, self.item_probability())
        n_valid = valid.sum(1)
        novelty = np.where(n_valid > 0, np.nansum(info, 1) / np.maximum(n_valid, 1), 0.0)
        rows = np.flatnonzero(clicked >= 0)
        item = clicked[rows]
        ctopic = self.topic[item]
        serendipity = np.zeros(self.n)
        serendipity[rows] = ~self.consumed_topics[rows, ctopic]
        first = ~self.consumed_items[rows, item]  # each user counts once per item
        np.add.at(self.item_users, item[first], 1)
        self.consumed_items[rows, item] = True
        self.consumed_topics[rows, ctopic] = True
        return {
            "diversity": diversity,
            "novelty": novelty / self.max_info,
            "serendipity": serendipity,
        }


def _weighted(weights: ExplorationWeights, terms: dict[str, np.ndarray]) -> np.ndarray:
    return sum((getattr(weights, t) * terms[t] for t in TERMS), np.zeros_like(terms[TERMS[0]]))


def _weights(weights: ExplorationWeights | None, **kw: float) -> ExplorationWeights:
    if weights is not None:
        if not isinstance(weights, ExplorationWeights):
            raise ConfigError(f"weights={weights!r} must be an ExplorationWeights")
        return weights
    return ExplorationWeights(**kw)


def _catalog(env: Any) -> Catalog:
    catalog = getattr(env.unwrapped, "catalog", None)
    if not isinstance(catalog, Catalog):
        raise ConfigError(
            f"{env!r} has no catalog (env.unwrapped.catalog); the exploration terms need item "
            "topics: wrap a recoworld env"
        )
    return catalog


class ExplorationReward(gym.Wrapper[Any, Any, Any, Any]):
    """A single env's reward plus weighted exploration terms (see the module docstring).

    Args:
        env: a recoworld env (its info has ``slate_ids``, ``clicked``, ``user_id``).
        diversity, novelty, serendipity: the weights (`ExplorationWeights`; default 0).
        weights: an `ExplorationWeights` instead of the three numbers.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        diversity: float = 0.0,
        novelty: float = 0.0,
        serendipity: float = 0.0,
        weights: ExplorationWeights | None = None,
    ) -> None:
        if isinstance(env, VectorEnv):
            raise ConfigError("ExplorationReward wraps a single env; use VectorExplorationReward")
        super().__init__(env)
        self.weights = _weights(
            weights, diversity=diversity, novelty=novelty, serendipity=serendipity
        )
        self.tracker = ExplorationTracker(_catalog(env), 1)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.tracker.start_users(np.ones(1, bool))
        self.tracker.user_id[:] = int(info.get("user_id", -1))
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        terms = self.tracker.terms(
            np.asarray(info["slate_ids"])[None], np.asarray([info["clicked"]])
        )
        info = dict(info)
        info["env_reward"] = float(reward)
        for t in TERMS:
            info[f"exploration_{t}"] = float(terms[t][0])
        return (
            obs,
            float(reward) + float(_weighted(self.weights, terms)[0]),
            terminated,
            truncated,
            info,
        )


class VectorExplorationReward(VectorWrapper):
    """A vector env's rewards plus weighted exploration terms (see the module docstring).

    A row whose ``info["user_id"]`` changes holds a new user: its consumption memory starts
    empty (works in both autoreset modes; in next-step mode the reset step shows nothing, so
    every term is 0 there).

    Args:
        env: a recoworld vector env.
        diversity, novelty, serendipity, weights: as for `ExplorationReward`.
    """

    def __init__(
        self,
        env: VectorEnv,
        diversity: float = 0.0,
        novelty: float = 0.0,
        serendipity: float = 0.0,
        weights: ExplorationWeights | None = None,
    ) -> None:
        if not isinstance(env, VectorEnv):
            raise ConfigError("VectorExplorationReward wraps a vector env; use ExplorationReward")
        super().__init__(env)
        self.weights = _weights(
            weights, diversity=diversity, novelty=novelty, serendipity=serendipity
        )
        self.tracker = ExplorationTracker(_catalog(env), env.num_envs)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.tracker.start_users(np.ones(self.num_envs, bool))
        self.tracker.user_id = np.asarray(info["user_id"], np.int64).copy()
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        # the step's slate belongs to the user before any same-step autoreset: compare the
        # finished rows' user ids from final_info, the others from info
        uid = np.asarray(info["user_id"], np.int64)
        if "final_info" in info:
            done = np.asarray(info["_final_info"], bool)
            uid = np.where(done, np.asarray(info["final_info"]["user_id"]), uid)
            src = info["final_info"]
            slate = np.where(done[:, None], src["slate_ids"], info["slate_ids"])
            clicked = np.where(done, src["clicked"], info["clicked"])
        else:
            slate, clicked = info["slate_ids"], info["clicked"]
        self.tracker.observe_users(uid)
        terms = self.tracker.terms(slate, clicked)
        info = dict(info)
        info["env_reward"] = np.asarray(reward, np.float64).copy()
        for t in TERMS:
            info[f"exploration_{t}"] = terms[t]
        total = np.asarray(reward, np.float64) + _weighted(self.weights, terms)
        if "final_info" in info:  # the finished users' successors start afresh
            self.tracker.observe_users(np.asarray(info["user_id"], np.int64))
        return obs, total.astype(np.float32), terminated, truncated, info


def exploration_reward(
    env: Any,
    diversity: float = 0.0,
    novelty: float = 0.0,
    serendipity: float = 0.0,
    weights: ExplorationWeights | None = None,
) -> Any:
    """``env`` wrapped in `VectorExplorationReward` (vector envs) or `ExplorationReward`."""
    cls: Any = VectorExplorationReward if isinstance(env, VectorEnv) else ExplorationReward
    return cls(env, diversity, novelty, serendipity, weights)
