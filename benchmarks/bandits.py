"""Speed and clicks of the bandits against random and popularity, measured in the same run.

1. Recommendations per second at 1,024 users (Engagement-v0: K = 50 candidates, slates of
   5): the time of ``recommend`` on one batch of observations, and of ``recommend`` plus
   ``update`` (a learner's full step), after a few learning steps so the models are not at
   their prior. Best of several rounds, so a burst of other load does not count; ratios are
   against random.
2. Clicks per user-step of each recommender learning online over 300 steps on
   Engagement-v0 with 1,024 users, all started from the same seed (common random numbers:
   the same users in the same slots). ± is a 95% CI over the 1,024 slots (each slot a
   stream of independent users); ratios are against random.

The oracle (a cheating ceiling that reads hidden utilities) and greedy join the clicks table
for scale. Numpy's BLAS threads matter for the dense bandits: on a busy machine,
``OPENBLAS_NUM_THREADS=1`` is faster and steadier.

    python benchmarks/bandits.py                       # about 5 minutes on 2 cores
    python benchmarks/bandits.py --users 128 --steps 30 --rounds 2   # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import gymnasium as gym
import numpy as np

import recoworld  # noqa: F401  (registers the env ids)
from recoworld.agents.base import make_recommender

ENV_ID = "recoworld/Engagement-v0"
SPEED_NAMES = ("random", "popularity", "linucb", "diag_linucb", "thompson", "inslate_thompson")
CLICK_NAMES = (*SPEED_NAMES, "greedy", "oracle")
WARMUP_STEPS = 5


def make_env(users: int) -> Any:
    return gym.make_vec(ENV_ID, num_envs=users, vectorization_mode="vector_entry_point")


def speed(name: str, users: int, rounds: int, seed: int) -> tuple[float, float]:
    """Users served per second by ``recommend``, and by ``recommend`` + ``update``."""
    env = make_env(users)
    rec = make_recommender(name, env, seed)
    obs, info = env.reset(seed=seed)
    for _ in range(WARMUP_STEPS):  # learn a little, so the models are not at their prior
        out = rec.recommend(obs, info)
        obs2, _, term, trunc, info2 = env.step(out.action)
        if hasattr(rec, "update"):
            rec.update(obs, info, out.action, info2)
        rec.reset(term | trunc)
        obs, info = obs2, info2
    out = rec.recommend(obs, info)
    _, _, _, _, feedback = env.step(out.action)
    best_rec = best_step = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        rec.recommend(obs, info)
        t1 = time.perf_counter()
        if hasattr(rec, "update"):
            rec.update(obs, info, out.action, feedback)
        t2 = time.perf_counter()
        best_rec, best_step = min(best_rec, t1 - t0), min(best_step, t2 - t0)
    env.close()
    return users / best_rec, users / best_step


def clicks(name: str, users: int, steps: int, seed: int) -> tuple[float, float, float]:
    """Mean clicks per user-step, its 95% CI half-width over slots, and wall seconds."""
    env = make_env(users)
    rec = make_recommender(name, env, seed)
    obs, info = env.reset(seed=seed)
    per_slot = np.zeros(users)
    t0 = time.perf_counter()
    for _ in range(steps):
        out = rec.recommend(obs, info)
        obs2, _, term, trunc, info2 = env.step(out.action)
        if hasattr(rec, "update"):
            rec.update(obs, info, out.action, info2)
        rec.reset(term | trunc)
        per_slot += info2["clicks"].sum(1)
        obs, info = obs2, info2
    wall = time.perf_counter() - t0
    env.close()
    rate = per_slot / steps
    return float(rate.mean()), float(1.96 * rate.std(ddof=1) / np.sqrt(users)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=10, help="timing rounds (best counts)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(
        f"# {ENV_ID}, {args.users} users, K=50, slate 5; seed {args.seed}; "
        f"numpy {np.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={threads}"
    )
    print(f"\n## recommendations per second ({args.users} users, best of {args.rounds})")
    print(f"{'recommender':<18}{'recommend/s':>14}{'x random':>10}{'+update/s':>14}")
    ref = None
    for name in SPEED_NAMES:
        rate, step_rate = speed(name, args.users, args.rounds, args.seed)
        ref = ref or rate
        print(f"{name:<18}{rate:>14,.0f}{rate / ref:>10.3f}{step_rate:>14,.0f}", flush=True)
    print(f"\n## clicks per user-step ({args.users} users, {args.steps} steps, same seed)")
    print(f"{'recommender':<18}{'clicks/step':>20}{'x random':>10}{'wall s':>9}")
    ref = None
    for name in CLICK_NAMES:
        mean, half, wall = clicks(name, args.users, args.steps, args.seed)
        ref = ref or mean
        cell = f"{mean:.4f} ± {half:.4f}"
        print(f"{name:<18}{cell:>20}{mean / ref:>10.3f}{wall:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
