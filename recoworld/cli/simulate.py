"""Simulate a population of users over calendar days under several recommenders and compare
them: engagement, retention, novelty, diversity, coverage and exposure fairness.

Writes the per-step log (Parquet, one part per day and recommender), summary.json and a plot
to --out, then prints the comparison table.

example:
  recoworld simulate --preset retention --users 3000 --days 14 --recommenders random popularity
  recoworld serve-fake-llm --port 8000 &   # or a real endpoint: vLLM, Ollama, OpenAI
  recoworld simulate --users llm --n-users 20 --days 3 --recommenders random llm
      --llm-base-url http://127.0.0.1:8000/v1 --llm-model fake-persona
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
    parser.add_argument(
        "--users",
        type=_users_arg,
        default=3000,
        help="number of users (default: 3000), or 'llm' for LLM persona users "
        "(count from --n-users, default 20)",
    )
    parser.add_argument("--n-users", type=int, default=None, help="number of users")
    llm = parser.add_argument_group("LLM users (--users llm)")
    llm.add_argument(
        "--llm-base-url", default=None, help="endpoint (default: $RECOWORLD_LLM_BASE_URL)"
    )
    llm.add_argument("--llm-model", default=None, help="model (default: $RECOWORLD_LLM_MODEL)")
    llm.add_argument("--llm-cache-dir", default=None, help="on-disk response cache (default: none)")
    llm.add_argument(
        "--personas", default=None, help="persona JSON/JSONL file (default: template personas)"
    )
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


LLM_DEFAULT_USERS = 20  # an LLM run costs one request per user and step


def _users_arg(value: str) -> int | str:
    if value == "llm":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--users {value!r}: give a number of users or 'llm'"
        ) from None


def _llm_users(args: argparse.Namespace) -> tuple[object, dict[str, object]]:
    """The LLM user model and the endpoint arguments of ``--users llm``."""
    from recoworld.llm import LLMConfig
    from recoworld.users.llm import LLMUser
    from recoworld.users.presets import preset

    users = LLMUser(args.personas, params=preset(args.preset).params)
    cfg = LLMConfig.from_env(
        base_url=args.llm_base_url, model=args.llm_model, cache_dir=args.llm_cache_dir
    )
    return users, {"llm": cfg}


def run(args: argparse.Namespace) -> int:
    from recoworld.cli.progress import ProgressBar
    from recoworld.replay.schema import trajectory_files
    from recoworld.simulation import simulate

    llm = args.users == "llm"
    n_users = args.n_users or (LLM_DEFAULT_USERS if llm else args.users)
    users, endpoint = _llm_users(args) if llm else (args.preset, {})
    kind = "llm" if llm else args.preset
    out = args.out or Path("runs") / f"simulate-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = simulate(
        users,
        args.recommenders,
        n_users=n_users,
        days=args.days,
        seed=args.seed,
        out_dir=out,
        write_trajectories=not args.no_trajectories,
        progress=ProgressBar(),
        **endpoint,
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
