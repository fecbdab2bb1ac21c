"""`fidelity_report`: a log against a simulated one (click AUC, KS statistics, a PNG)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.errors import require
from recoworld.replay.calibration.files import write_atomically
from recoworld.replay.calibration.fit import CalibrationResult
from recoworld.replay.calibration.logs import LogArrays

Progress = Callable[[int, int, str], None]


# ------------------------------------------------------------------------ fidelity
def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``max |F_a - F_b|`` (NaN if a sample is empty)."""
    a = np.sort(np.asarray(a, np.float64).ravel())
    b = np.sort(np.asarray(b, np.float64).ravel())
    if a.size == 0 or b.size == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.abs(fa - fb).max())


def session_statistics(log: Any) -> dict[str, Any]:
    """Per-session distributions and the summary rates of a log.

    Returns:
        ``session_ctr`` ``(sessions,)`` clicks per shown item; ``session_length``
        ``(sessions,)`` steps; ``return_gap`` ``(returns,)`` days to the next session;
        and the floats ``ctr`` (clicks per shown item), ``mean_session_length`` and
        ``next_day_return`` (share of sessions followed by one the next day), defined as
        `recoworld.simulation.SUMMARY_METRICS` defines them.
    """
    arr = log if isinstance(log, LogArrays) else LogArrays.from_log(log)
    sid = np.cumsum(arr.first) - 1
    n_sessions = int(sid[-1]) + 1
    shown = np.bincount(sid, weights=arr.valid.sum(1), minlength=n_sessions)
    clicks = np.bincount(sid, weights=arr.clicks.sum(1), minlength=n_sessions)
    length = np.bincount(sid, minlength=n_sessions).astype(np.float64)
    gaps = arr.return_days[arr.left & (arr.return_days >= 1)].astype(np.float64)
    return {
        "session_ctr": clicks / np.maximum(shown, 1),
        "session_length": length,
        "return_gap": gaps,
        "ctr": float(clicks.sum() / max(shown.sum(), 1)),
        "mean_session_length": float(length.mean()),
        "next_day_return": float((arr.return_days == 1).sum() / n_sessions),
    }


@dataclass(frozen=True)
class FidelityReport:
    """Logged vs simulated behaviour.

    Attributes:
        rows: metric -> (logged, simulated, relative difference, KS statistic or NaN).
        holdout_auc: click-prediction AUC on held-out sessions (NaN when unknown).
        logged, simulated: `session_statistics` of each log (for plots).
    """

    rows: dict[str, tuple[float, float, float, float]]
    holdout_auc: float
    logged: dict[str, Any]
    simulated: dict[str, Any]

    def table(self) -> str:
        """The report as an aligned text table."""
        head = f"{'metric':<22}{'logged':>10}{'simulated':>11}{'rel. diff':>11}{'KS':>8}"
        lines = [head, "-" * len(head)]
        for name, (lv, sv, rel, ks) in self.rows.items():
            ks_s = f"{ks:>8.3f}" if math.isfinite(ks) else f"{'':>8}"
            lines.append(f"{name:<22}{lv:>10.4f}{sv:>11.4f}{rel:>+11.1%}{ks_s}")
        auc = f"{self.holdout_auc:.4f}" if math.isfinite(self.holdout_auc) else "n/a"
        lines.append(f"held-out click AUC: {auc}")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG with the three distributions (logged vs simulated), atomically."""
        figure: Any = require("matplotlib.figure", "plot")
        fig = figure.Figure(figsize=(12, 3.8), layout="constrained")
        axes = fig.subplots(1, 3)
        panels = (
            ("session_ctr", "CTR per session", 30),
            ("session_length", "session length (steps)", None),
            ("return_gap", "return gap (days)", None),
        )
        for ax, (key, title, bins) in zip(axes, panels, strict=True):
            a, b = self.logged[key], self.simulated[key]
            both = np.concatenate([a, b]) if a.size + b.size else np.zeros(1)
            if bins is None:  # integer data: one bin per value (or per few values)
                step = max(1, int(np.ceil(float(both.max(initial=1.0)) / 40)))
                edges = np.arange(0.5, max(float(both.max()), 1.0) + step + 0.5, step)
            else:
                edges = np.linspace(float(both.min()), float(both.max()) + 1e-9, bins + 1)
            ax.hist(a, bins=edges, density=True, alpha=0.5, label="logged")
            ax.hist(b, bins=edges, density=True, alpha=0.5, label="simulated")
            ks = self.rows.get(_KS_ROW[key], (0, 0, 0, float("nan")))[3]
            ax.set(title=f"{title}  KS={ks:.3f}", xlabel=title, ylabel="density")
            ax.legend()
        path = Path(path)
        return write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


_KS_ROW = {
    "session_ctr": "CTR",
    "session_length": "mean session length",
    "return_gap": "mean return gap",
}


def fidelity_report(
    original_log: Any,
    simulated_log: Any,
    *,
    calibration: CalibrationResult | None = None,
) -> FidelityReport:
    """Compare a logged and a simulated log (see the module docstring).

    Args:
        original_log, simulated_log: paths, DataFrames, `Sessions` or `LogArrays`.
        calibration: the fit whose held-out click AUC the report shows (its ``holdout``
            sessions were left out of the fit).

    Returns:
        A `FidelityReport`; ``table()`` and ``plot(path)`` render it.
    """
    lo, si = session_statistics(original_log), session_statistics(simulated_log)

    def rel(a: float, b: float) -> float:
        return (b - a) / a if a else float("nan")

    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if x.size else float("nan")

    rows: dict[str, tuple[float, float, float, float]] = {}
    for name, key, dist in (
        ("CTR", "ctr", "session_ctr"),
        ("mean session length", "mean_session_length", "session_length"),
        ("next-day return", "next_day_return", ""),
        ("mean return gap", "", "return_gap"),
    ):
        a = float(lo[key]) if key else mean(lo[dist])
        b = float(si[key]) if key else mean(si[dist])
        ks = ks_statistic(lo[dist], si[dist]) if dist else float("nan")
        rows[name] = (a, b, rel(a, b), ks)
    auc = calibration.holdout_auc if calibration is not None else float("nan")
    return FidelityReport(rows, auc, lo, si)
