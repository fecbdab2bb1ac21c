"""Measure how many user-steps per second the native vector env runs on this machine.

Steps ``RecoVectorEnv`` with random slates at each ``--users`` size for about ``--seconds``
and prints user-steps per second. The full benchmark, with a bare-numpy reference measured in
the same run and the single env, is ``benchmarks/throughput.py`` in the repository.

example:
  recoworld bench --env recoworld/Retention-v0 --users 1 64 1024 --seconds 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np

HELP = "measure the vector env's user-steps per second on this machine"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="recoworld/Retention-v0", help="environment id")
    parser.add_argument(
        "--users", type=int, nargs="+", default=[1, 64, 1024], help="batch sizes to time"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time per batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed of users and actions")


def measure(env_id: str, n_users: int, seconds: float, seed: int = 0) -> float:
    """User-steps per second of ``env_id``'s native vector env with ``n_users`` users."""
    import gymnasium as gym

    from recoworld.errors import ConfigError

    if n_users < 1 or seconds <= 0:
        raise ConfigError(f"users={n_users} and seconds={seconds} must be positive")
    envs = gym.make_vec(env_id, num_envs=n_users, vectorization_mode="vector_entry_point")
    envs.reset(seed=seed)
    k = int(envs.single_action_space.nvec[0]) if hasattr(envs.single_action_space, "nvec") else 0
    size = len(getattr(envs.single_action_space, "nvec", [1]))
    gen = np.random.default_rng(seed)
    pool = [np.argsort(gen.random((n_users, max(k, 1))), 1)[:, :size] for _ in range(8)]
    if size == 1:
        pool = [a[:, 0] for a in pool]
    envs.step(pool[0])  # warm up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(pool[steps % len(pool)])
        steps += 1
    return n_users * steps / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> int:
    print(f"{args.env}: user-steps per second (random slates, {args.seconds:g} s each)")
    for n in args.users:
        print(f"  {n:>7,} users  {measure(args.env, n, args.seconds, args.seed):>12,.0f}")
    return 0
