"""Thread-safe running totals of a client's requests, tokens, fallbacks and cost."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from recoworld.llm.records import TokenUsage

_COUNTS = tuple(f.name for f in dataclasses.fields(TokenUsage) if f.name != "cost")


class UsageMeter:
    """Counts what a client spends; `snapshot` returns a `TokenUsage`.

    Args:
        cost: maps (prompt_tokens, completion_tokens) to an estimated cost, or None.
    """

    def __init__(self, cost: Callable[[int, int], float | None]) -> None:
        self._cost = cost
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTS, 0)

    def add(self, **counts: int) -> None:
        """Add to the named counters (names of `TokenUsage` fields)."""
        with self._lock:
            for name, value in counts.items():
                self._counts[name] += int(value)

    def snapshot(self) -> TokenUsage:
        """The totals so far."""
        with self._lock:
            counts = dict(self._counts)
        return TokenUsage(
            **counts, cost=self._cost(counts["prompt_tokens"], counts["completion_tokens"])
        )

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._counts = dict.fromkeys(_COUNTS, 0)
