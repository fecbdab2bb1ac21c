"""Train a Stable-Baselines3 agent (or any registered algorithm) on a recoworld env.

Writes a run folder: the final model (model.zip), checkpoints, the SB3 logger's CSV (and
TensorBoard files when tensorboard is installed), one row per training episode, evaluations
on fixed users, and a learning-curve PNG. Needs the rl extra (torch, stable-baselines3).

examples:
  recoworld train --algo ppo --env recoworld/Retention-v0 --timesteps 50000 --seed 0 --n-envs 8
  recoworld train --algo dqn --env recoworld/Engagement-v0 --env-arg slate_size=1
  recoworld train --algo a2c --env-arg n_items=300 --env-arg num_candidates=10 --timesteps 2000
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

from recoworld.errors import ConfigError

HELP = "train an RL recommender (PPO, A2C, DQN, ...) and write a run folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--algo", default="ppo", help="algorithm: ppo, a2c, dqn or another registered one"
    )
    parser.add_argument(
        "--env", default="recoworld/Retention-v0", help="env id (default: recoworld/Retention-v0)"
    )
    parser.add_argument(
        "--timesteps", type=int, default=50_000, help="training user-steps (default: 50000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument("--n-envs", type=int, default=8, help="users stepped together (default: 8)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder (default: runs/<algo>-<env>-s<seed>-<time>)",
    )
    parser.add_argument(
        "--eval-freq", type=int, default=10_000, help="steps between evaluations (default: 10000)"
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=32, help="episodes per evaluation (default: 32)"
    )
    parser.add_argument(
        "--checkpoint-freq",
        type=int,
        default=50_000,
        help="steps between checkpoints (default: 50000)",
    )
    parser.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env keyword argument, repeatable (e.g. --env-arg slate_size=1)",
    )
    parser.add_argument(
        "--algo-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="algorithm hyperparameter, repeatable (e.g. --algo-arg learning_rate=1e-4)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--no-plot", action="store_true", help="skip the learning-curve PNG")
    parser.add_argument(
        "--verbose", action="store_true", help="print SB3's logger tables while training"
    )


def parse_pairs(pairs: list[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (values as Python literals when they
    parse, strings otherwise)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {pair!r} is not KEY=VALUE, e.g. {flag} slate_size=1")
        try:
            out[key.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key.strip()] = text
    return out


def run(args: argparse.Namespace) -> int:
    from recoworld.agents.sb3.train import get_algorithm, train
    from recoworld.cli.progress import ProgressBar

    get_algorithm(args.algo)  # fail on an unknown name before importing torch
    env_kwargs = parse_pairs(args.env_arg, "--env-arg")
    result = train(
        args.algo,
        args.env,
        args.timesteps,
        seed=args.seed,
        n_envs=args.n_envs,
        out_dir=args.out,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        checkpoint_freq=args.checkpoint_freq,
        algo_kwargs=parse_pairs(args.algo_arg, "--algo-arg"),
        progress=None if args.verbose else ProgressBar(),
        plot=not args.no_plot,
        device=args.device,
        verbose=int(args.verbose),
        **env_kwargs,
    )
    mean, half = result.eval_return
    print(
        f"{args.algo} on {args.env}: {args.timesteps} steps in {result.seconds:.0f}s; "
        f"final evaluation return {mean:.2f} ± {half:.2f} (95% CI, {args.eval_episodes} episodes)"
    )
    print(f"wrote {result.out_dir}/")
    for name, path in result.files.items():
        if path.exists():
            shown = (
                path.relative_to(result.out_dir) if path.is_relative_to(result.out_dir) else path
            )
            print(f"  {name:15s} {shown}")
    print(
        f"evaluate it with `recoworld evaluate --env {args.env} --policy {result.model_path}`; "
        f"in Python, recoworld.evaluation.load_saved_policy('{result.model_path}', env) "
        "gives it as a recommender"
    )
    return 0
