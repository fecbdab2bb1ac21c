"""Simulate a population of users over calendar days under several recommenders and compare
them: engagement, retention, novelty, diversity, coverage and exposure fairness.

Writes the per-step log (Parquet, one part per day and recommender), summary.json and a plot
to --out, then prints the comparison table.

example:
  recoworld simulate --preset retention --users 3000 --days 14 --recommenders random popularity
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from recoworld.users.presets import PRESETS

HELP = "simulate users over days under recommenders and compare them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="retention",
        help="user preset (default: retention)",
    )
    parser.add_argument("--users", type=int, default=3000, help="users (default: 3000)")
    parser.add_argument("--days", type=int, default=14, help="days (default: 14)")
    parser.add_argument(
        "--recommenders",
        nargs="+",
        default=["random", "popularity"],
        metavar="NAME",
        help="recommenders to compare (default: random popularity)",
    )
    parser.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: runs/simulate-<preset>-<timestamp>)",
    )
    parser.add_argument(
        "--no-trajectories", action="store_true", help="do not write the per-step Parquet log"
    )


def run(args: argparse.Namespace) -> int:
    from recoworld.cli.progress import ProgressBar
    from recoworld.replay.schema import trajectory_files
    from recoworld.simulation import simulate

    out = args.out or Path("runs") / f"simulate-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = simulate(
        args.preset,
        args.recommenders,
        n_users=args.users,
        days=args.days,
        seed=args.seed,
        out_dir=out,
        write_trajectories=not args.no_trajectories,
        progress=ProgressBar(),
    )
    print(result.table())
    print(f"\nwrote {out}/")
    for name in ("summary.json", "simulation.png"):
        if (out / name).exists():
            print(f"  {name}")
    parts = trajectory_files(out / "trajectories")
    if parts:
        print(
            f"  trajectories/<recommender>/part-XXXX.parquet ({len(parts)} files; read them "
            "with recoworld.replay.read_trajectories)"
        )
    return 0
