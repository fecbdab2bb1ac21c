"""Learning curves from a run folder's ``episodes.csv`` and ``eval/evaluations.npz``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from recoworld.errors import ConfigError, require
from recoworld.metrics import mean_ci


def read_episodes(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, returns)`` of the finished training episodes in ``episodes.csv``
    (``steps``: training steps taken when the episode ended)."""
    with open(path, newline="") as f:
        rows = [(float(r["step"]), float(r["return"])) for r in csv.DictReader(f)]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps, returns = np.array(rows).T
    return steps, returns


def read_evaluations(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(timesteps, mean, 95% CI half-width)`` of each evaluation in ``evaluations.npz``."""
    data = np.load(path)
    stats = np.array([mean_ci(r) for r in data["results"]]).reshape(-1, 2)
    return data["timesteps"], stats[:, 0], stats[:, 1]


def plot_learning_curve(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Draw training returns (moving average) and evaluation returns (mean ± 95% CI) against
    environment steps into ``learning_curve.png`` of the run folder.

    Args:
        run_dir: a folder written by `recoworld.agents.sb3.train.train`.
        path: where to write the PNG (default ``run_dir / "learning_curve.png"``).

    Returns:
        The PNG's path.
    """
    require("matplotlib", "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    episodes, evals = run / "episodes.csv", run / "eval" / "evaluations.npz"
    if not episodes.is_file() and not evals.is_file():
        raise ConfigError(f"{run} has neither episodes.csv nor eval/evaluations.npz to plot")
    fig, ax = plt.subplots(figsize=(7, 4))
    if episodes.is_file():
        steps, returns = read_episodes(episodes)
        if returns.size:
            w = max(returns.size // 20, 1)
            smooth = np.convolve(returns, np.ones(w) / w, mode="valid")
            ax.plot(steps, returns, ".", alpha=0.15, color="C0", ms=3)
            ax.plot(steps[w - 1 :], smooth, color="C0", label=f"training (mean of {w})")
    if evals.is_file():
        t, mean, half = read_evaluations(evals)
        ax.errorbar(
            t,
            mean,
            yerr=np.nan_to_num(half),
            color="C1",
            marker="o",
            capsize=3,
            label="evaluation (same users, mean ± 95% CI)",
        )
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(run.name)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path) if path is not None else run / "learning_curve.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
