"""`UserState`: the struct of arrays that holds n simulated users (float32/int32)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from recoworld.users.params import UserParams


@dataclass(eq=False)
class UserState:
    """n users as parallel arrays; row u is one user. Hidden fields are never observed.

    Identity:
        key: ``(n,)`` uint64 counter-based random stream key; user_id: ``(n,)`` int64;
        segment: ``(n,)`` int16 population segment.
    Hidden (never in an observation):
        params: per-user `UserParams` arrays; theta, theta0: ``(n, dim)`` float32 interest and
        its anchor; novelty: ``(n,)`` static trait; propensity: ``(n,)`` this session's novelty
        propensity; exposure: ``(n, n_topics)`` decaying topic exposure ``x_u``; satisfaction:
        ``(n,)`` session satisfaction ``S``; past_mix: ``(n, n_topics)`` topic mix of earlier
        sessions (for staleness).
    Observable by a recommender (a real system logs these):
        history: ``(n, H)`` int32 last clicked items, newest first (-1 = empty);
        last_enjoyed: ``(n,)`` last item watched past 60% (-1 = none);
        familiar: ``(n, n_topics)`` bool topics the user has ever clicked;
        click_mix: ``(n, n_topics)`` decaying mix of clicked topics; seen_mix: ``(n, n_topics)``
        decaying mix of shown topics; session_mix: ``(n, n_topics)`` clicked topics this session;
        recent_clicks, recent_skips: ``(n,)`` decaying per-step click and skip rates;
        novel_clicks, familiar_clicks: ``(n,)`` int32 this session; life_novel, life_familiar:
        ``(n,)`` int32 over the user's lifetime;
        session, step, day: ``(n,)`` int32 session index, step in session, current day;
        instr_kind (int8), instr_topic, instr_item (int32), instr_age (int16): the active
        instruction (kind 0 = none); churned: ``(n,)`` bool.
    """

    key: np.ndarray
    user_id: np.ndarray
    segment: np.ndarray
    params: UserParams
    theta: np.ndarray
    theta0: np.ndarray
    novelty: np.ndarray
    propensity: np.ndarray
    exposure: np.ndarray
    satisfaction: np.ndarray
    past_mix: np.ndarray
    history: np.ndarray
    last_enjoyed: np.ndarray
    familiar: np.ndarray
    click_mix: np.ndarray
    seen_mix: np.ndarray
    session_mix: np.ndarray
    recent_clicks: np.ndarray
    recent_skips: np.ndarray
    novel_clicks: np.ndarray
    familiar_clicks: np.ndarray
    life_novel: np.ndarray
    life_familiar: np.ndarray
    session: np.ndarray
    step: np.ndarray
    day: np.ndarray
    instr_kind: np.ndarray
    instr_topic: np.ndarray
    instr_item: np.ndarray
    instr_age: np.ndarray
    churned: np.ndarray

    @property
    def n(self) -> int:
        return int(self.key.shape[0])

    @classmethod
    def empty(cls, n: int, dim: int, n_topics: int, history: int, params: UserParams) -> UserState:
        """Zeroed state of n users (fresh users before sampling fills the hidden fields)."""
        f32, i32 = np.float32, np.int32
        return cls(
            key=np.zeros(n, np.uint64),
            user_id=np.zeros(n, np.int64),
            segment=np.zeros(n, np.int16),
            params=params,
            theta=np.zeros((n, dim), f32),
            theta0=np.zeros((n, dim), f32),
            novelty=np.zeros(n, f32),
            propensity=np.zeros(n, f32),
            exposure=np.zeros((n, n_topics), f32),
            satisfaction=np.zeros(n, f32),
            past_mix=np.zeros((n, n_topics), f32),
            history=np.full((n, history), -1, i32),
            last_enjoyed=np.full(n, -1, i32),
            familiar=np.zeros((n, n_topics), bool),
            click_mix=np.zeros((n, n_topics), f32),
            seen_mix=np.zeros((n, n_topics), f32),
            session_mix=np.zeros((n, n_topics), f32),
            recent_clicks=np.zeros(n, f32),
            recent_skips=np.zeros(n, f32),
            novel_clicks=np.zeros(n, i32),
            familiar_clicks=np.zeros(n, i32),
            life_novel=np.zeros(n, i32),
            life_familiar=np.zeros(n, i32),
            session=np.zeros(n, i32),
            step=np.zeros(n, i32),
            day=np.zeros(n, i32),
            instr_kind=np.zeros(n, np.int8),
            instr_topic=np.full(n, -1, i32),
            instr_item=np.full(n, -1, i32),
            instr_age=np.zeros(n, np.int16),
            churned=np.zeros(n, bool),
        )

    def take(self, idx: np.ndarray | slice) -> UserState:
        """A new state holding rows ``idx``: copies for an index array, views for a slice."""
        out: dict[str, Any] = {name: getattr(self, name)[idx] for name in ARRAY_FIELDS}
        out["params"] = self.params.take_rows(idx)
        return UserState(**out)

    def put(self, idx: np.ndarray, other: UserState) -> None:
        """Write ``other``'s rows into rows ``idx`` (in place)."""
        for name in ARRAY_FIELDS:
            getattr(self, name)[idx] = getattr(other, name)
        self.params.put_rows(idx, other.params)

    def nbytes(self) -> int:
        """Memory held by the arrays, in bytes."""
        total = 0
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, UserParams):
                total += sum(getattr(v, g.name).nbytes for g in fields(v))
            else:
                total += v.nbytes
        return total


ARRAY_FIELDS = tuple(f.name for f in fields(UserState) if f.name != "params")
