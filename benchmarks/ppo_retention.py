"""Does PPO beat popularity and random on Retention-v0?

Trains SB3 PPO (`recoworld.agents.sb3.train.train` with its defaults: `CandidatePolicy`, 8
users stepped together) on ``recoworld/Retention-v0`` with the env's default settings for
``--timesteps`` user-steps (200,000 by default; the issue's budget), then runs PPO
(deterministic: with `CandidatePolicy` the top-5 candidates by score), PPO (sampled), popularity
and random on the *same* ``--users`` users: every recommender resets the env with the same
seed, so user u is the same simulated person under each (common random numbers), and each
user's first episode (14 days of sessions, or until churn) counts once.

Prints mean episode return, episode length and sessions with 95% confidence intervals, and
the paired difference to popularity (per user, so the users' own variance cancels).

    python benchmarks/ppo_retention.py                       # train 200k steps, then evaluate
    python benchmarks/ppo_retention.py --model runs/x/model.zip   # evaluate a saved model
    python benchmarks/ppo_retention.py --timesteps 2048 --users 32  # smoke run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from recoworld.agents.base import make_recommender
from recoworld.metrics import mean_ci

ENV_ID = "recoworld/Retention-v0"
# evaluation users: not the training users (seeds 0..7 and their successors), and not the
# users (seed 20,000) on which train()'s defaults were chosen
EVAL_SEED = 30_000


def run_users(make_rec: Callable[[Any], Any], n_users: int, seed: int) -> dict[str, np.ndarray]:
    """Each of ``n_users`` users' first episode under the recommender ``make_rec(env)``.

    Returns per-user arrays ``return``, ``length`` (steps) and ``sessions``.
    """
    env = gym.make_vec(ENV_ID, num_envs=n_users, vectorization_mode="vector_entry_point")
    rec = make_rec(env)
    obs, info = env.reset(seed=seed)  # same seed -> same users for every recommender
    ret = np.zeros(n_users)
    length = np.zeros(n_users, np.int64)
    sessions = np.zeros(n_users, np.int64)
    live = np.ones(n_users, bool)
    while live.any():
        obs, reward, term, trunc, info = env.step(rec.recommend(obs, info).action)
        ret[live] += reward[live]
        length[live] += 1
        sessions[live] = info["session"][live] + 1
        done = term | trunc
        if done.any() and hasattr(rec, "reset"):
            rec.reset(done)
        live &= ~done
    env.close()
    return {"return": ret, "length": length, "sessions": sessions}


def train_ppo(
    timesteps: int, seed: int, out: Path | None, algo_kwargs: dict[str, Any], policy: str
) -> Path:
    from recoworld.agents.sb3.extractor import extractor_kwargs
    from recoworld.agents.sb3.train import train
    from recoworld.cli.progress import ProgressBar

    default_head = policy == "multi-input"  # SB3's own head over CandidateExtractor features
    result = train(
        "ppo",
        ENV_ID,
        timesteps,
        seed=seed,
        n_envs=8,
        out_dir=out,
        eval_freq=max(timesteps // 10, 1),
        progress=ProgressBar(),
        algo_kwargs=algo_kwargs,
        policy="MultiInputPolicy" if default_head else None,
        policy_kwargs=extractor_kwargs() if default_head else None,
    )
    mean, half = result.eval_return
    print(
        f"trained PPO for {timesteps} steps in {result.seconds:.0f}s (run folder "
        f"{result.out_dir}); its last evaluation: {mean:.2f} ± {half:.2f}"
    )
    return result.model_path


def main(
    timesteps: int,
    users: int,
    seed: int,
    model_path: Path | None,
    out: Path | None,
    algo_kwargs: dict[str, Any] | None = None,
    policy: str = "candidate",
) -> None:
    from recoworld.agents.sb3 import SB3Recommender, load_policy
    from recoworld.agents.sb3.train import seed_everything

    if model_path is None:
        model_path = train_ppo(timesteps, seed, out, algo_kwargs or {}, policy)
    seed_everything(seed)
    model = load_policy(model_path, ENV_ID)
    recommenders: dict[str, Callable[[Any], Any]] = {
        "PPO (deterministic)": lambda env: SB3Recommender(model),
        "PPO (sampled)": lambda env: SB3Recommender(model, deterministic=False),
        "popularity": lambda env: make_recommender("popularity", env),
        "random": lambda env: make_recommender("random", env, seed=seed),
    }
    results = {}
    for name, make in recommenders.items():
        t0 = time.perf_counter()
        results[name] = run_users(make, users, EVAL_SEED)
        print(f"  evaluated {name} on {users} users in {time.perf_counter() - t0:.0f}s")
    pop = results["popularity"]["return"]
    print(
        f"\n{ENV_ID} (default settings), {users} users (seed {EVAL_SEED}, the same for every "
        f"recommender), first episode each; PPO: {timesteps} steps, seed {seed}, policy "
        f"{policy}, hyperparameters {algo_kwargs or 'default'}"
    )
    print(
        f"{'recommender':22s} {'return':>16s} {'vs popularity':>16s} "
        f"{'length':>14s} {'sessions':>12s}"
    )
    for name, r in results.items():
        m, h = mean_ci(r["return"])
        dm, dh = mean_ci(r["return"] - pop)
        lm, lh = mean_ci(r["length"])
        sm, sh = mean_ci(r["sessions"])
        diff = "" if name == "popularity" else f"{dm:+7.2f} ± {dh:5.2f}"
        print(
            f"{name:22s} {m:8.2f} ± {h:5.2f} {diff:>16s} {lm:7.1f} ± {lh:4.1f} "
            f"{sm:5.2f} ± {sh:4.2f}"
        )
    print("(mean ± 95% CI half-width; 'vs popularity' is the paired per-user difference)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timesteps", type=int, default=200_000, help="PPO training steps")
    ap.add_argument("--users", type=int, default=512, help="evaluation users (default 512)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    ap.add_argument("--model", type=Path, default=None, help="evaluate this model.zip instead")
    ap.add_argument("--out", type=Path, default=None, help="run folder for training")
    ap.add_argument(
        "--algo-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="PPO hyperparameter overriding train()'s default, repeatable",
    )
    ap.add_argument(
        "--policy",
        choices=("candidate", "multi-input"),
        default="candidate",
        help="CandidatePolicy (default) or SB3's MultiInputPolicy over CandidateExtractor",
    )
    args = ap.parse_args()
    from recoworld.cli.train import parse_pairs

    main(
        args.timesteps,
        args.users,
        args.seed,
        args.model,
        args.out,
        parse_pairs(args.algo_arg, "--algo-arg"),
        args.policy,
    )
