"""Evaluate several recommenders on the same env and the same simulated users (common random
numbers), over many users and seeds: a table of mean ± 95% CI of return, session length,
clicks, watch time, next-day return, novelty, diversity, instructions and coverage.

Writes evaluation.csv and evaluation.png to --out, then prints the table.

examples:
  recoworld evaluate --env recoworld/Retention-v0 --recommenders random popularity \\
      instruction_popularity --users 256 --seeds 0 1 2
  recoworld evaluate --env recoworld/Retention-v0 --policy runs/ppo/model.zip
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "compare recommenders (and saved policies) on the same users, with 95% CIs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        default="recoworld/Retention-v0",
        help="environment id (default: recoworld/Retention-v0)",
    )
    parser.add_argument(
        "--recommenders",
        nargs="*",
        default=["random", "popularity", "instruction_popularity"],
        metavar="NAME",
        help="registered recommenders (default: random popularity instruction_popularity)",
    )
    parser.add_argument(
        "--policy",
        nargs="+",
        default=[],
        type=Path,
        metavar="PATH",
        help="saved Stable-Baselines3 policies (.zip) to evaluate too (needs the rl extra)",
    )
    parser.add_argument("--users", type=int, default=256, help="users per seed (default: 256)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)"
    )
    parser.add_argument(
        "--episodes", type=int, default=1, help="episodes per user and seed (default: 1)"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="cap on env steps per seed and recommender (default: none)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: runs/evaluate-<env>-<timestamp>)",
    )


def run(args: argparse.Namespace) -> int:
    from recoworld.cli.progress import ProgressBar
    from recoworld.errors import ConfigError
    from recoworld.evaluation import evaluate

    specs: list[object] = [*args.recommenders, *args.policy]
    if not specs:
        raise ConfigError("nothing to evaluate; give --recommenders NAME ... or --policy PATH")
    stem = args.env.split(":", 1)[-1].replace("recoworld/", "").replace("/", "-")
    out = args.out or Path("runs") / f"evaluate-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = evaluate(
        specs,
        env_id=args.env,
        n_users=args.users,
        seeds=args.seeds,
        episodes_per_user=args.episodes,
        max_steps=args.max_steps,
        progress=ProgressBar(),
    )
    print(result.table())
    lost = {k: v for k, v in result.settings["unfinished"].items() if v}
    if lost:
        print(f"\nepisodes dropped at the --max-steps cap: {lost}")
    print(f"\nwrote {out}/")
    result.to_csv(out / "evaluation.csv")
    print("  evaluation.csv")
    try:
        result.plot(out / "evaluation.png")
        print("  evaluation.png")
    except ImportError:  # matplotlib is the optional "plot" extra
        print("  (no evaluation.png: install the plot extra, pip install 'recoworld[plot]')")
    return 0
