"""Baseline recommenders: greedy similarity, an ε-greedy wrapper and the cheating oracle.

Registered names (`recoworld.agents.base.make_recommender`): ``"greedy"``,
``"epsilon_greedy"`` (ε = 0.1 around greedy) and ``"oracle"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from recoworld.agents.base import (
    Recommender,
    _format,
    _slate_size,
    env_action_space,
    register_recommender,
)
from recoworld.errors import ConfigError
from recoworld.types import Recommendation

TIE_BREAK = 1e-6
"""Weight of log-popularity (in [0, 1]) added to greedy's cosine: breaks (near-)ties."""

N_EXTRA_COLS = 5
"""Per-candidate columns after the embedding: quality, log-popularity, length, topic new to
the user, the user's recent exposure to the topic (`recoworld.envs.observation`)."""
LOG_POP_COL = 1  # offset of log-popularity after the embedding


def _top(score: np.ndarray, slate_size: int) -> np.ndarray:
    """``(n, slate_size)`` indices of the highest scores per row (first index wins ties)."""
    return np.argsort(-score, axis=1, kind="stable")[:, :slate_size]


def _as_slates(action: np.ndarray) -> np.ndarray:
    """A batched action as ``(n, L)`` (``(n,)`` actions of ``Discrete`` spaces get L = 1)."""
    action = np.asarray(action)
    return action[:, None] if action.ndim == 1 else action


def _check_dim(dim: Any) -> int:
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
        raise ConfigError(
            f"dim={dim!r} must be a positive integer: the catalog's embedding size "
            "(env.unwrapped.catalog.dim)"
        )
    return int(dim)


class GreedyRecommender:
    """Shows the candidates most similar to what the user clicked recently.

    A candidate's score is the cosine similarity of its embedding (the first ``dim`` columns
    of ``obs["candidates"]``) to the mean embedding of the user's recent clicks (the last
    ``dim`` columns of ``obs["user"]``), plus ``TIE_BREAK`` times its log-popularity. A user
    without clicks yet (a zero mean embedding) has cosine 0 everywhere, so the cold start and
    every tie fall back to popularity. Deterministic (propensity 1).

    Args:
        action_space: the single env's action space (``Discrete`` / ``MultiDiscrete``).
        dim: the catalog's embedding size (``env.unwrapped.catalog.dim``).
    """

    def __init__(self, action_space: spaces.Space[Any], dim: int) -> None:
        self.slate_size = _slate_size(action_space)
        self.dim = _check_dim(dim)

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` cosine similarity to the recent clicks plus a popularity tie-break."""
        cand = np.asarray(obs["candidates"])
        emb = np.ascontiguousarray(cand[:, :, : self.dim], np.float64)
        user = np.ascontiguousarray(np.asarray(obs["user"])[:, -self.dim :], np.float64)
        dot = np.matmul(emb, user[:, :, None])[:, :, 0]
        norm = np.sqrt(
            np.einsum("nkd,nkd->nk", emb, emb) * np.einsum("nd,nd->n", user, user)[:, None]
        )
        cos = np.where(norm > 1e-12, dot / np.maximum(norm, 1e-12), 0.0)
        return cos + TIE_BREAK * cand[:, :, self.dim + LOG_POP_COL]

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        idx = _top(self.score(obs, info), self.slate_size)
        return Recommendation(_format(idx, self.slate_size), np.ones(idx.shape), True)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless."""


class EpsilonGreedy:
    """Wraps a recommender: with probability ε per user a uniformly random slate instead.

    Each step draws, for every user, one coin and one random slate (K uniforms, top
    ``slate_size`` of them: a uniformly random slate without repeats), and asks the base
    recommender for its slate; users whose coin is below ε get the random slate. The draws
    do not depend on the coin's outcome, so a seed fixes the whole sequence.

    Propensities follow the protocol's convention: slot j's is the probability of the item
    shown there *given the items shown above it*, under the mixture. With ``B_j`` the base's
    probability of the shown prefix through slot j (the product of its own slot propensities
    while the shown items are its own, 0 after a mismatch) and ``U_j = prod_{i<=j} 1/(K-i)`` the
    uniform slate's::

        p_j = ((1 - ε) B_j + ε U_j) / ((1 - ε) B_{j-1} + ε U_{j-1}),   B_{-1} = U_{-1} = 1

    Exact for a deterministic base. For a stochastic base its probability of items it did not
    pick is unknown and taken as 0, so those propensities are lower bounds.

    Args:
        base: the recommender to explore around.
        epsilon: probability in [0, 1] of a random slate, per user and step.
        seed: seed of its `numpy.random.Generator`.
    """

    def __init__(self, base: Recommender, epsilon: float = 0.1, seed: int | None = None) -> None:
        if not isinstance(epsilon, (int, float)) or not 0.0 <= epsilon <= 1.0:
            raise ConfigError(f"epsilon={epsilon!r} must be a probability in [0, 1]")
        if not hasattr(base, "recommend"):
            raise ConfigError(f"base={base!r} is not a Recommender (it has no recommend method)")
        self.base = base
        self.epsilon = float(epsilon)
        self.rng = np.random.default_rng(seed)

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        inner = self.base.recommend(obs, info)
        base_idx = _as_slates(inner.action)
        n, slate_size = base_idx.shape
        k = obs["candidates"].shape[1]
        explore = np.less(self.rng.random(n), self.epsilon)
        rand_idx = _top(self.rng.random((n, k)), slate_size)
        idx = np.where(explore[:, None], rand_idx, base_idx)
        base_prop = np.asarray(inner.propensity, np.float64).reshape(n, slate_size)
        eps = self.epsilon
        through = np.cumprod(np.where(idx == base_idx, base_prop, 0.0), axis=1)
        before = np.concatenate([np.ones((n, 1)), through[:, :-1]], axis=1)
        uni = np.cumprod(1.0 / (k - np.arange(slate_size)))
        uni_before = np.concatenate([[1.0], uni[:-1]])
        prop = ((1 - eps) * through + eps * uni) / ((1 - eps) * before + eps * uni_before)
        deterministic = bool(inner.deterministic and self.epsilon == 0.0)
        extras = {**inner.extras, "explored": explore}
        return Recommendation(_format(idx, slate_size), prop, deterministic, extras)

    def update(
        self,
        obs: dict[str, np.ndarray],
        info: dict[str, Any],
        action: np.ndarray,
        feedback: dict[str, Any],
    ) -> None:
        """Pass the feedback on to the base (a learner learns from the explored slates too)."""
        update = getattr(self.base, "update", None)
        if update is not None:
            update(obs, info, action, feedback)

    def reset(self, mask: np.ndarray | None = None) -> None:
        reset = getattr(self.base, "reset", None)
        if reset is not None:
            reset(mask)

    def select(self, keep: np.ndarray) -> None:
        select = getattr(self.base, "select", None)
        if select is not None:
            select(keep)


class OracleRecommender:
    """CHEATING UPPER BOUND: ranks candidates by the simulator's hidden true utilities.

    Reads the hidden state of the env's current users (``env.unwrapped.core.state``) and
    ranks each user's candidates by `ParametricUser.item_utility` (interest affinity, quality,
    novelty, boredom, repetition; no position bias or slate-similarity term), showing the top
    ``slate_size``. No real system can do this: use it only as a ceiling in comparisons,
    never as a default or as a baseline to beat. It is bound to the env it was built with and
    expects the batch to be that env's full set of slots, in order (no ``select``).
    Deterministic (propensity 1).

    Args:
        env: a recoworld single or vector env with a parametric core.

    Raises:
        ConfigError: when the env has no parametric core whose user model exposes
            ``item_utility`` (LLM users, replayed logs, foreign envs).
    """

    def __init__(self, env: Any) -> None:
        raw = getattr(env, "unwrapped", env)
        core = getattr(raw, "core", None)
        users = getattr(getattr(core, "world", None), "users", None)
        if core is None or not callable(getattr(users, "item_utility", None)):
            raise ConfigError(
                f"OracleRecommender needs a recoworld env with a parametric user core "
                f"(env.unwrapped.core.world.users.item_utility); {type(raw).__name__} has none. "
                "The oracle reads hidden simulator state, which LLM users, replayed logs and "
                "other envs do not expose; compare against another recommender there."
            )
        self.env = raw
        self.core = core
        self.users: Any = users
        self.catalog = raw.catalog
        self.slate_size = _slate_size(env_action_space(env))

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` hidden utilities of each user's candidates."""
        state = self.core.state
        if state is None:
            raise ConfigError("OracleRecommender: reset the env before asking for a slate")
        cand = np.asarray(info["candidate_ids"])
        if cand.shape[0] != state.n:
            raise ConfigError(
                f"OracleRecommender: a batch of {cand.shape[0]} users, but its env holds "
                f"{state.n}; the oracle reads the env's users row by row, so give it the env's "
                "full batch"
            )
        return np.asarray(self.users.item_utility(state, cand, self.catalog), np.float64)

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        idx = _top(self.score(obs, info), self.slate_size)
        return Recommendation(_format(idx, self.slate_size), np.ones(idx.shape), True)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless (the env holds the users)."""


def _greedy(env: Any) -> GreedyRecommender:
    return GreedyRecommender(env_action_space(env), env.unwrapped.catalog.dim)


DEFAULT_EPSILON = 0.1

register_recommender("greedy", lambda env, seed: _greedy(env))
register_recommender(
    "epsilon_greedy", lambda env, seed: EpsilonGreedy(_greedy(env), DEFAULT_EPSILON, seed)
)
register_recommender("oracle", lambda env, seed: OracleRecommender(env))
