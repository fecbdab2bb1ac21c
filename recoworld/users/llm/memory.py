"""Per-user text state of an LLM user: mindset and two-level memory.

Level one: the recent interactions of the current session (the last few turns). Level two: one
summary per past session. Summaries are built deterministically from the session's turn records
(counts, top clicked topics, last satisfaction and mindset note, instructions given), so closing
a session costs no extra LLM call and a rerun gives the same summaries.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from recoworld.users.llm.persona import Persona

RECENT_TURNS = 6  # turns of the current session shown in the prompt
PAST_SESSIONS = 5  # session summaries shown in the prompt


@dataclass(frozen=True, slots=True)
class Mindset:
    """How the user feels right now; rewritten by the model every turn.

    Attributes:
        interest: 0..1, how engaged the user is.
        boredom: 0..1, how tired the user is of what it sees.
        note: a short free-text thought ("too much cooking today").
    """

    interest: float = 0.6
    boredom: float = 0.0
    note: str = "just opened the app"

    def as_dict(self) -> dict[str, Any]:
        return {"interest": self.interest, "boredom": self.boredom, "note": self.note}


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """What happened in one turn, as the user remembers it.

    Attributes:
        step: step in the session. clicked, liked: titles. skipped_topics: topics of the items
        left unclicked. topics: topics of the clicked items. watch: mean watch fraction of the
        clicks. satisfaction: as reported (None after a fallback). instruction: text said.
        fallback: the model's answer was unusable and the fallback decision was taken.
    """

    step: int
    clicked: tuple[str, ...]
    liked: tuple[str, ...]
    topics: tuple[str, ...]
    skipped_topics: tuple[str, ...]
    watch: float
    satisfaction: float | None
    instruction: str = ""
    fallback: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.step,
            "clicked": list(self.clicked),
            "liked": list(self.liked),
            "clicked_topics": sorted(set(self.topics)),
            "skipped_topics": sorted(set(self.skipped_topics)),
        }
        if self.instruction:
            out["said"] = self.instruction
        return out


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One past session, summarised from its turn records (no LLM call).

    Attributes:
        session: index; day: the day it started; steps, clicks, likes: counts; top_topics: the
        most clicked topics (up to 3); satisfaction: the last reported satisfaction (None if
        none was reported); note: the last mindset note; instructions: what the user said.
    """

    session: int
    day: int
    steps: int
    clicks: int
    likes: int
    top_topics: tuple[str, ...]
    satisfaction: float | None
    note: str
    instructions: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "day": self.day,
            "steps": self.steps,
            "clicks": self.clicks,
            "likes": self.likes,
            "top_topics": list(self.top_topics),
            "satisfaction": self.satisfaction,
            "note": self.note,
            "said": list(self.instructions),
        }


def summarise(session: int, day: int, turns: list[TurnRecord], mindset: Mindset) -> SessionSummary:
    """The summary of a session from its turns (deterministic)."""
    topics = Counter(t for turn in turns for t in turn.topics)
    sats = [t.satisfaction for t in turns if t.satisfaction is not None]
    return SessionSummary(
        session=session,
        day=day,
        steps=len(turns),
        clicks=sum(len(t.clicked) for t in turns),
        likes=sum(len(t.liked) for t in turns),
        top_topics=tuple(
            name for name, _ in sorted(topics.items(), key=lambda x: (-x[1], x[0]))[:3]
        ),
        satisfaction=sats[-1] if sats else None,
        note=mindset.note,
        instructions=tuple(t.instruction for t in turns if t.instruction),
    )


class UserMemory:
    """The text state of one LLM user: persona, mindset, this session's turns, past sessions.

    Args:
        persona: who the user is.
        recent: turns of the current session shown in the prompt.
        past: session summaries kept.
    """

    __slots__ = ("day", "failures", "mindset", "past", "persona", "recent", "session", "turns")

    def __init__(self, persona: Persona, recent: int = RECENT_TURNS, past: int = PAST_SESSIONS):
        self.persona = persona
        self.mindset = Mindset()
        self.turns: list[TurnRecord] = []
        self.recent: deque[TurnRecord] = deque(maxlen=recent)
        self.past: deque[SessionSummary] = deque(maxlen=past)
        self.session = 0
        self.day = 0
        self.failures = 0  # consecutive turns that took the fallback decision

    def sync_session(self, session: int, day: int) -> None:
        """Close the current session (summary) when the user's state has moved to a new one."""
        if session == self.session:
            return
        if self.turns:
            self.past.append(summarise(self.session, self.day, self.turns, self.mindset))
        self.turns = []
        self.recent.clear()
        self.session, self.day = session, day
        # a new session starts rested: boredom fades over the gap, interest resets
        self.mindset = Mindset(note=f"back after a break; {self.mindset.note}"[:200])

    def record(self, turn: TurnRecord, mindset: Mindset | None) -> None:
        self.turns.append(turn)
        self.recent.append(turn)
        if mindset is not None:
            self.mindset = mindset

    def view(self) -> dict[str, Any]:
        """What the prompt's data block shows about the user (persona, mindset, memory)."""
        return {
            "persona": self.persona.as_dict(),
            "mindset": self.mindset.as_dict(),
            "recent": [t.as_dict() for t in self.recent],
            "sessions": [s.as_dict() for s in self.past],
        }
