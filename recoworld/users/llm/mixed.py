"""`MixedUsers`: the dynamics of a population that mixes parametric and LLM segments.

Rows are routed by segment: every parametric row steps in one batch through the parametric rules
(parameters are per-user arrays, so several parametric segments still share one batch); the LLM
segments' turns are gathered and sent in one ``chat_many`` per distinct client, so all LLM users
of a step go out concurrently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recoworld.catalog import Catalog
from recoworld.types import Feedback
from recoworld.users.parametric import ParametricUser
from recoworld.users.state import UserState

_FIELDS = (
    "clicks",
    "watch_fraction",
    "watch_time",
    "likes",
    "leave",
    "ignored",
    "instruction_kind",
    "instruction_topic",
    "instruction_item",
)


def _fill(like: np.ndarray, n: int) -> np.ndarray:
    """An ``(n, ...)`` array of ``like``'s dtype holding the "nothing" value of that dtype."""
    shape = (n, *like.shape[1:])
    if like.dtype == object:
        return np.full(shape, None, object)
    if like.dtype.kind == "f":
        return np.full(shape, np.nan, like.dtype)
    if like.dtype.kind == "U":
        return np.full(shape, "", like.dtype)
    return np.zeros(shape, like.dtype)


def merge_feedback(n: int, parts: list[tuple[np.ndarray, Feedback]]) -> Feedback:
    """One `Feedback` of n users from the feedback of disjoint row groups.

    Extras missing from a group get that dtype's "nothing" (NaN, False, None, ""); instruction
    fields of rows no group covers stay "none" (-1 topic and item).
    """
    first = parts[0][1]
    out: dict[str, np.ndarray] = {}
    for name in _FIELDS:
        proto = getattr(first, name)
        out[name] = np.zeros((n, *proto.shape[1:]), proto.dtype)
    out["instruction_topic"][:] = -1
    out["instruction_item"][:] = -1
    extras: dict[str, np.ndarray] = {}
    for _, fb in parts:
        for key, v in fb.extras.items():
            if key not in extras:
                extras[key] = _fill(np.asarray(v), n)
    for rows, fb in parts:
        for name in _FIELDS:
            out[name][rows] = getattr(fb, name)
        for key, v in fb.extras.items():
            extras[key][rows] = v
    return Feedback(**out, extras=extras)


def take_feedback(fb: Feedback, rows: np.ndarray) -> Feedback:
    """Rows ``rows`` of a batched `Feedback` (extras too)."""
    return Feedback(
        **{name: getattr(fb, name)[rows] for name in _FIELDS},
        extras={k: np.asarray(v)[rows] for k, v in fb.extras.items()},
    )


class MixedUsers:
    """Routes each user to its segment's model (see the module docstring).

    Args:
        segments: the population's segments, in order (``UserState.segment`` indexes them).
    """

    def __init__(self, segments: tuple[Any, ...]) -> None:
        self.segments = segments
        self.llm = [j for j, s in enumerate(segments) if getattr(s, "is_llm_user", False)]
        self.parametric = [j for j in range(len(segments)) if j not in self.llm]
        self.rules = segments[self.parametric[0]] if self.parametric else ParametricUser()
        self.info_extras: dict[str, Any] = {}
        for j in self.llm:
            self.info_extras.update(segments[j].info_extras)

    def __repr__(self) -> str:
        return f"MixedUsers({[getattr(s, 'name', type(s).__name__) for s in self.segments]})"

    def _groups(self, state: UserState) -> list[tuple[Any, np.ndarray]]:
        """(model, rows) per group: all parametric rows together, then each LLM segment."""
        out = []
        rows = np.flatnonzero(np.isin(state.segment, self.parametric))
        if rows.size:
            out.append((self.rules, rows))
        for j in self.llm:
            rows = np.flatnonzero(state.segment == j)
            if rows.size:
                out.append((self.segments[j], rows))
        return out

    def respond(
        self, state: UserState, slate: np.ndarray, catalog: Catalog, u: np.ndarray
    ) -> Feedback:
        """Feedback of every user; LLM turns of all segments sharing a client in one call."""
        parts: list[tuple[np.ndarray, Feedback]] = []
        calls: dict[int, list[tuple[Any, np.ndarray, UserState, list[Any]]]] = {}
        for model, rows in self._groups(state):
            sub = state.take(rows)
            if getattr(model, "is_llm_user", False):
                reqs = model.requests(sub, slate[rows], catalog)
                calls.setdefault(id(model._client()), []).append((model, rows, sub, reqs))
            else:
                parts.append((rows, model.respond(sub, slate[rows], catalog, u[rows])))
        for group in calls.values():
            client = group[0][0]._client()
            results = client.chat_many([r for *_, reqs in group for r in reqs])
            lo = 0
            for model, rows, sub, reqs in group:
                mine = results[lo : lo + len(reqs)]
                lo += len(reqs)
                parts.append((rows, model.feedback(sub, slate[rows], catalog, mine)))
        return merge_feedback(state.n, parts)

    def transition(
        self, state: UserState, slate: np.ndarray, feedback: Feedback, catalog: Catalog
    ) -> None:
        for model, rows in self._groups(state):
            sub = state.take(rows)
            model.transition(sub, slate[rows], take_feedback(feedback, rows), catalog)
            state.put(rows, sub)

    def item_utility(self, state: UserState, items: np.ndarray, catalog: Catalog) -> np.ndarray:
        """Parametric utility for every user (LLM personas: their interest vector's)."""
        return self.rules.item_utility(state, items, catalog)

    @property
    def usage(self) -> Any:
        """Summed `TokenUsage` of the LLM segments' distinct clients (None when unused)."""
        return usage_of(self)


def usage_of(users: Any) -> Any:
    """`TokenUsage` summed over the distinct clients behind a dynamics object (None if none)."""
    models = users.segments if isinstance(users, MixedUsers) else (users,)
    clients = {}
    for m in models:
        c = getattr(m, "client", None)
        if getattr(m, "is_llm_user", False) and c is not None:
            clients[id(c)] = c
    total = None
    for c in clients.values():
        total = c.usage if total is None else total + c.usage
    return total
