"""A tiny text progress bar for long commands (no dependencies)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Draws ``[#####.....] done/total label elapsed`` on one line, redrawn on each call.

    Use it as the ``progress`` callback of `recoworld.simulate`.

    Args:
        stream: where to draw (standard error by default).
        width: characters of the bar.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.start = time.monotonic()
        self._last = 0

    def __call__(self, done: int, total: int, label: str = "") -> None:
        frac = min(max(done / total, 0.0), 1.0) if total else 1.0
        filled = round(self.width * frac)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {label} "
            f"{time.monotonic() - self.start:.0f}s"
        )
        self.stream.write("\r" + line.ljust(self._last))
        self._last = len(line)
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
