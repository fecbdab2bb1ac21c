"""Rewards from observable feedback only."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from recoworld.errors import ConfigError
from recoworld.types import Feedback


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the default reward ``r``.

    ``r = click * clicks + watch * watch_time / median_length + like * likes
    + return_bonus * exp(-(gap - 1) / return_tau)`` at a session's end when the user will
    return (``gap`` days later; nothing when it churns).

    Attributes:
        click: per click (1.0).
        watch: per median item length watched (1.0).
        like: per like (0.0).
        return_bonus: bonus for a next-day return, decaying with the gap (0.0; Retention-v0
            uses about one session's engagement).
        return_tau: decay of the bonus in days (2.0).
    """

    click: float = 1.0
    watch: float = 1.0
    like: float = 0.0
    return_bonus: float = 0.0
    return_tau: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not np.isfinite(v):
                raise ConfigError(f"reward weight {f.name}={v} must be finite")
        if self.return_tau <= 0:
            raise ConfigError(f"return_tau={self.return_tau} must be > 0 (days)")

    def __call__(
        self, feedback: Feedback, median_length: float, gap: np.ndarray, returns: np.ndarray
    ) -> np.ndarray:
        """Rewards ``(n,)`` float32; ``gap`` ``(n,)`` days to the next session and
        ``returns`` ``(n,)`` bool (the session ended and the user did not churn)."""
        r = (
            self.click * feedback.clicks.sum(1)
            + self.watch * feedback.watch_time.sum(1) / median_length
        )
        if self.like:
            r = r + self.like * feedback.likes.sum(1)
        if self.return_bonus:
            bonus = self.return_bonus * np.exp(-(np.maximum(gap, 1) - 1) / self.return_tau)
            r = r + np.where(returns, bonus, 0.0)
        return r.astype(np.float32)
