"""How much of SB3 training time the environment takes, and recommendation speed.

1. SB3 PPO (`recoworld.agents.sb3.train`'s defaults: `CandidatePolicy`, rollouts of 2,048
   steps, minibatches of 256, 5 epochs; then SB3's own minibatches of 64 and 10 epochs) on
   ``Retention-v0`` with 8 users stepped together, for ``--steps`` user-steps (20,000 by
   default). The adapter's ``step_wait`` (the native vector
   env's step plus the conversion to SB3's per-env infos) is timed inside ``learn``; the
   share of wall time spent there should be at most 15%. Also prints training steps/s and, as
   a reference measured in the same run, the adapter's steps/s under random actions.
2. Recommendations per second of every registered recommender (random, popularity, and the
   bandits once their module exists) at 1,024 users, ``recommend`` only.

Torch runs on one thread (as `train` does): on a busy 2-core machine more threads spin and
slow the small networks down.

    python benchmarks/training.py             # about two minutes on 2 cores
    python benchmarks/training.py --quick     # smoke run: 2,048 steps
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

N_ENVS = 8
TARGET_SHARE = 0.15
ENV_ID = "recoworld/Retention-v0"


def ppo_env_share(steps: int, seed: int = 0, **algo_kwargs: object) -> dict[str, float]:
    """Train PPO for ``steps`` user-steps; time spent in the env vs the whole ``learn``."""
    from stable_baselines3.common.vec_env import VecMonitor

    from recoworld.agents.sb3.train import get_algorithm, seed_everything
    from recoworld.agents.sb3.vec_env import to_sb3_vec_env

    seed_everything(seed)
    raw = to_sb3_vec_env(ENV_ID, N_ENVS, seed)
    env_time = [0.0]
    inner = raw.step_wait

    def timed_step_wait():  # wraps this instance's step_wait only
        t0 = time.perf_counter()
        out = inner()
        env_time[0] += time.perf_counter() - t0
        return out

    raw.step_wait = timed_step_wait  # type: ignore[method-assign]
    env = VecMonitor(raw)
    model = get_algorithm("ppo").make(env, seed=seed, **algo_kwargs)
    t0 = time.perf_counter()
    model.learn(steps)
    total = time.perf_counter() - t0
    return {"steps": float(model.num_timesteps), "total_s": total, "env_s": env_time[0]}


def env_alone(steps: int, seed: int = 0) -> float:
    """Adapter steps/s (user-steps) under random actions, the env's own speed."""
    from recoworld.agents.sb3.vec_env import to_sb3_vec_env

    env = to_sb3_vec_env(ENV_ID, N_ENVS, seed)
    env.reset()
    rng = np.random.default_rng(seed)
    k = int(env.action_space.nvec[0])
    slate = int(env.action_space.nvec.shape[0])
    actions = np.argsort(rng.random((64, N_ENVS, k)), axis=2)[:, :, :slate]
    n = max(steps // N_ENVS, 1)
    t0 = time.perf_counter()
    for i in range(n):
        env.step(actions[i % 64])
    return n * N_ENVS / (time.perf_counter() - t0)


def recommendation_rates(n_users: int = 1024, seconds: float = 1.0) -> dict[str, float]:
    """Users served per second by each registered recommender (``recommend`` calls only)."""
    from recoworld.agents.base import RECOMMENDERS, _load_builtin_agents, make_recommender
    from recoworld.envs import RecoVectorEnv

    _load_builtin_agents()
    env = RecoVectorEnv(num_envs=n_users, users="retention", multi_session=True)
    obs, info = env.reset(seed=0)
    rates = {}
    for name in sorted(RECOMMENDERS):
        try:
            rec = make_recommender(name, env, seed=0)
        except Exception as exc:  # a recommender this env cannot host (e.g. needs an LLM)
            print(f"  {name}: skipped ({type(exc).__name__}: {exc})")
            continue
        rec.recommend(obs, info)  # warm-up
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            rec.recommend(obs, info)
            calls += 1
        rates[name] = calls * n_users / (time.perf_counter() - t0)
    return rates


def main(steps: int, quick: bool) -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    print(f"SB3 PPO on {ENV_ID}, {N_ENVS} users stepped together, {steps} user-steps")
    configs = {
        "train() defaults (minibatch 256, 5 epochs)": {},
        "SB3's PPO defaults (minibatch 64, 10 epochs)": {"batch_size": 64, "n_epochs": 10},
    }
    for label, kwargs in configs.items():
        r = ppo_env_share(steps, **kwargs)
        share = r["env_s"] / r["total_s"]
        verdict = "ok" if share <= TARGET_SHARE else "ABOVE TARGET"
        print(
            f"  {label}: {r['steps']:.0f} steps in {r['total_s']:.1f}s = "
            f"{r['steps'] / r['total_s']:.0f} steps/s; inside the env (adapter step_wait) "
            f"{r['env_s']:.2f}s = {share:.1%} of wall time (target <= {TARGET_SHARE:.0%}: "
            f"{verdict})"
        )
    ref = env_alone(min(steps, 20_000))
    print(f"  reference, same run: the adapter alone under random actions {ref:.0f} steps/s")
    print("recommendations per second at 1,024 users (recommend only):")
    for name, rate in recommendation_rates(seconds=0.3 if quick else 1.0).items():
        print(f"  {name:20s} {rate:12,.0f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000, help="PPO user-steps (default 20000)")
    ap.add_argument("--quick", action="store_true", help="smoke run (2,048 steps)")
    args = ap.parse_args()
    main(2_048 if args.quick else args.steps, args.quick)
