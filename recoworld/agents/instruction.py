"""Instruction following: "user instructs, recommender responds", the parametric half.

`InstructionFollowingRecommender` wraps any recommender and re-ranks its candidates by the
user's active structured instruction, read from the observation only:

- ``obs["instruction"]`` ``(n, 4 + 2 dim + 1)``: kind one-hot (MORE_OF_TOPIC, LESS_OF_TOPIC,
  SOMETHING_NEW, MORE_LIKE_ITEM), the topic's centroid ``(dim,)``, the named item's embedding
  ``(dim,)`` and the instruction's age; zeros when none is active;
- ``obs["candidates"]`` ``(n, K, dim + 5)``: each candidate's embedding in the first ``dim``
  columns and "topic new to this user" (0/1) in column ``dim + 3``.

Topic membership is the cosine of a candidate's embedding with the instruction's topic
centroid (in the synthetic catalog an item's cosine with its own topic's centroid is above 0.7,
with any other centroid almost always below 0.5); similarity to a named item is the cosine of
the two embeddings. Nothing hidden (interests, satisfaction, the item's topic id) is read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from recoworld.agents.base import (
    Recommender,
    _slate_size,
    env_action_space,
    make_recommender,
    register_recommender,
)
from recoworld.errors import ConfigError
from recoworld.types import N_INSTRUCTION_KINDS, InstructionKind, Recommendation

DEFAULT_STRENGTH = 2.0
NEW_COLUMN = 3  # "topic new to the user" sits at column dim + 3 of a candidate's features
SAME_ITEM = 0.9999  # cosine above which a candidate is the named item itself


def rank_normalise(score: np.ndarray) -> np.ndarray:
    """Each row's scores replaced by their rank scaled to ``[0, 1]`` (ties share their mean
    rank), so that a boost added to them means the same for any base scorer.

    Args:
        score: ``(n, K)`` base scores, higher is better.

    Returns:
        ``(n, K)`` float64: 1.0 for a row's best candidate, 0.0 for its worst; 0.5 everywhere
        when ``K == 1``.
    """
    n, k = score.shape
    if k == 1:
        return np.full((n, 1), 0.5)
    order = np.argsort(score, axis=1, kind="stable")
    ranked = np.take_along_axis(score, order, axis=1)
    pos = np.broadcast_to(np.arange(k), (n, k))
    starts = np.ones((n, k), bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    ends = np.ones((n, k), bool)
    ends[:, :-1] = starts[:, 1:]
    last = np.minimum.accumulate(np.where(ends, pos, k - 1)[:, ::-1], axis=1)[:, ::-1]
    out = np.empty((n, k))
    np.put_along_axis(out, order, (first + last) / (2.0 * (k - 1)), axis=1)
    return out


def instruction_relevance(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """How much each candidate serves its user's active instruction, from the observation.

    MORE_OF_TOPIC: cosine with the topic centroid; LESS_OF_TOPIC: minus that cosine;
    SOMETHING_NEW: 1 for a candidate whose topic is new to the user, else 0; MORE_LIKE_ITEM:
    cosine with the named item (0 for the item itself, which the user has just seen).

    Args:
        obs: batched observation with ``candidates`` ``(n, K, F)`` and ``instruction``
            ``(n, 4 + 2 dim + 1)``.

    Returns:
        ``(relevance (n, K) float64, active (n,) bool)``; relevance is 0 on rows without an
        active instruction.
    """
    cand = np.asarray(obs["candidates"], dtype=np.float64)
    instr = np.asarray(obs["instruction"], dtype=np.float64)
    if cand.ndim != 3 or instr.ndim != 2 or instr.shape[0] != cand.shape[0]:
        raise ConfigError(
            f"expected batched obs['candidates'] (n, K, F) and obs['instruction'] (n, D), got "
            f"{cand.shape} and {instr.shape}; wrap a single env's obs with batch_single"
        )
    dim = (instr.shape[1] - N_INSTRUCTION_KINDS - 1) // 2
    if dim < 1 or instr.shape[1] != N_INSTRUCTION_KINDS + 2 * dim + 1 or cand.shape[2] < dim + 4:
        raise ConfigError(
            f"obs['instruction'] has {instr.shape[1]} columns and obs['candidates'] "
            f"{cand.shape[2]}; expected 4 + 2 dim + 1 and at least dim + 4 (a recoworld env's "
            "observation)"
        )
    kind = np.where(
        instr[:, :N_INSTRUCTION_KINDS].any(1), instr[:, :N_INSTRUCTION_KINDS].argmax(1) + 1, 0
    )
    active = kind > 0
    emb = cand[:, :, :dim]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=2, keepdims=True), 1e-12)
    k0 = N_INSTRUCTION_KINDS
    centroid, item = instr[:, k0 : k0 + dim], instr[:, k0 + dim : k0 + 2 * dim]
    centroid = centroid / np.maximum(np.linalg.norm(centroid, axis=1, keepdims=True), 1e-12)
    item = item / np.maximum(np.linalg.norm(item, axis=1, keepdims=True), 1e-12)
    on_topic = np.einsum("nkd,nd->nk", emb, centroid)
    like = np.einsum("nkd,nd->nk", emb, item)
    like = np.where(like > SAME_ITEM, 0.0, like)
    new = cand[:, :, dim + NEW_COLUMN]
    col = kind[:, None]
    relevance = np.select(
        [
            col == InstructionKind.MORE_OF_TOPIC,
            col == InstructionKind.LESS_OF_TOPIC,
            col == InstructionKind.SOMETHING_NEW,
            col == InstructionKind.MORE_LIKE_ITEM,
        ],
        [on_topic, -on_topic, new, like],
        default=0.0,
    )
    return relevance, active


class InstructionFollowingRecommender:
    """Re-ranks a base recommender's candidates by each user's active instruction.

    Mechanism: the base's scores ``(n, K)`` are replaced by their within-row rank scaled to
    ``[0, 1]``, and ``strength * relevance`` is added, where relevance (see
    `instruction_relevance`) is the cosine with the asked-for topic (MORE_OF), minus it
    (LESS_OF), the "topic new to you" flag (SOMETHING_NEW) or the cosine with the liked item
    (MORE_LIKE); the slate is the top ``slate_size`` of the sum. Because the base enters by
    rank, ``strength`` means the same for every base: a candidate whose relevance is higher by
    ``Δ`` overtakes every candidate less than ``strength * Δ`` of the rank range above it.

    Default ``strength = 2``: a candidate that clearly serves the instruction (``Δ >= 0.5``:
    on topic vs off topic, whose cosines are >= 0.7 vs mostly < 0.3; new vs familiar) outranks
    every candidate that does not, whatever their base ranks, while the base still orders the
    candidates within each group (cosines within a topic differ by ~0.1, i.e. 0.2 of the rank
    range). So the slate takes on-topic (new, similar) candidates first and drops on-topic ones
    for LESS_OF, which meets the user model's compliance rules (>= 30% of the slate on topic,
    <= 10% on topic, >= 30% from unfamiliar topics, >= 1 other item like the liked one)
    whenever the K candidates hold enough such items: on Retention-v0 over 99% of the steps
    with an active instruction comply, against ~11% for the random and under 1% for the greedy
    recommender unwrapped (what still fails is MORE_OF with fewer than 2 candidates on topic).
    ``strength = 1`` complies about as often with random or popularity bases, but not always
    with bases whose favourites crowd one topic (their on-topic candidates then hold the top
    of the rank range), and 0.5 fails LESS_OF for those. ``strength = 0`` returns the base
    unchanged.

    The base is called once per step: its ``recommend`` (returned as is) when no user has an
    active instruction or ``strength == 0``; otherwise its ``score(obs, info)`` when it has
    one, else the rank order of its ``recommend`` slate (shown items first, in slot order; the
    other candidates tied). Propensities are not tracked through the re-ranking: on steps
    that re-rank they are 1.0 and the recommendation is flagged deterministic (unusable for
    off-policy evaluation). ``update``, ``reset`` and ``select`` are passed on to the base.

    Args:
        base: the recommender to wrap.
        strength: compliance strength, >= 0 (0 = the base unchanged).
        action_space: the single env's ``Discrete``/``MultiDiscrete`` action space; None uses
            ``base.slate_size`` (bases without ``score`` need neither: their action's shape
            gives the slate size).

    Attributes:
        reranked: ``(n,)`` bool, the users whose slate was re-ranked at the last step.
    """

    def __init__(
        self,
        base: Recommender,
        strength: float = DEFAULT_STRENGTH,
        action_space: spaces.Space[Any] | None = None,
    ) -> None:
        if not callable(getattr(base, "recommend", None)):
            raise ConfigError(
                f"base={base!r} is not a Recommender (it has no recommend(obs, info)); pass one, "
                "e.g. make_recommender('popularity', env)"
            )
        if (
            isinstance(strength, bool)
            or not isinstance(strength, (int, float, np.integer, np.floating))
            or not np.isfinite(strength)
            or strength < 0
        ):
            raise ConfigError(
                f"strength={strength!r} must be a finite number >= 0 (0 = the base unchanged, "
                f"default {DEFAULT_STRENGTH})"
            )
        self.base = base
        self.strength = float(strength)
        if action_space is not None:
            self.slate_size: int | None = _slate_size(action_space)
        else:
            size = getattr(base, "slate_size", None)
            self.slate_size = int(size) if size is not None else None
        self.reranked = np.zeros(0, bool)

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """The re-ranked scores ``(n, K)``: rank of the base's score in ``[0, 1]`` plus
        ``strength * relevance`` (so wrappers can compose on them)."""
        if not callable(getattr(self.base, "score", None)):
            raise ConfigError(
                f"the base {type(self.base).__name__} has no score(obs, info); use recommend()"
            )
        base = np.asarray(self.base.score(obs, info), dtype=np.float64)  # type: ignore[attr-defined]
        return self._combine(base, obs)

    def _combine(self, base: np.ndarray, obs: dict[str, np.ndarray]) -> np.ndarray:
        relevance, _ = instruction_relevance(obs)
        if base.shape != relevance.shape:
            raise ConfigError(
                f"the base's scores have shape {base.shape}, expected (n, K) = "
                f"{relevance.shape}; its score(obs, info) must score every candidate"
            )
        return rank_normalise(base) + self.strength * relevance

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        """Slates ``(n, slate_size)`` (``(n,)`` when ``slate_size == 1``) of candidate
        indices, re-ranked for the users with an active instruction."""
        instr = np.asarray(obs["instruction"])
        active = np.asarray(instr[:, :N_INSTRUCTION_KINDS].any(1), bool)
        self.reranked = np.zeros(active.shape, bool)
        if self.strength == 0 or not active.any():
            return self.base.recommend(obs, info)
        if callable(getattr(self.base, "score", None)):
            size = self.slate_size
            if size is None:
                raise ConfigError(
                    "cannot tell the slate size: the base has no slate_size attribute; pass "
                    "action_space=env.single_action_space"
                )
            composed = self.score(obs, info)
            single = size == 1
        else:
            rec = self.base.recommend(obs, info)
            action = np.asarray(rec.action)
            single = action.ndim == 1
            slate = action[:, None] if single else action
            size = slate.shape[1]
            k = obs["candidates"].shape[1]
            pseudo = np.zeros((slate.shape[0], k))
            np.put_along_axis(pseudo, slate, np.arange(size, 0, -1, dtype=np.float64), axis=1)
            composed = self._combine(pseudo, obs)
        idx = np.argsort(-composed, axis=1, kind="stable")[:, :size]
        self.reranked = active
        act = idx[:, 0] if single else idx
        return Recommendation(
            act, np.ones(idx.shape), True, {"instruction_followed": active.copy()}
        )

    def update(
        self,
        obs: dict[str, np.ndarray],
        info: dict[str, Any],
        action: np.ndarray,
        feedback: Any,
    ) -> None:
        """Pass the step on to the base, if it learns."""
        if callable(getattr(self.base, "update", None)):
            self.base.update(obs, info, action, feedback)  # type: ignore[attr-defined]

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Pass on to the base: forget users ``mask`` (bool ``(n,)``; all when None)."""
        if callable(getattr(self.base, "reset", None)):
            self.base.reset(mask)  # type: ignore[attr-defined]

    def select(self, keep: np.ndarray) -> None:
        """Pass on to the base: keep only rows ``keep`` of per-user state."""
        if callable(getattr(self.base, "select", None)):
            self.base.select(keep)  # type: ignore[attr-defined]


def _wrapping(name: str) -> Any:
    def factory(env: Any, seed: int | None) -> InstructionFollowingRecommender:
        return InstructionFollowingRecommender(
            make_recommender(name, env, seed), action_space=env_action_space(env)
        )

    return factory


register_recommender("instruction_popularity", _wrapping("popularity"))
register_recommender("instruction_random", _wrapping("random"))
register_recommender("instruction_greedy", _wrapping("greedy"))  # greedy: agents.baselines
