"""Train PPO on Retention-v0, then compare it with popularity on the same 64 users.

python examples/train_ppo.py [--timesteps 20000] [--out runs/example-ppo]

Writes a run folder (model.zip, logs, checkpoints, learning_curve.png). 20,000 steps take about
a minute on 2 cores; the benchmark `benchmarks/ppo_retention.py` trains for 200,000.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np

from recoworld.agents import make_recommender
from recoworld.agents.sb3 import SB3Recommender
from recoworld.agents.sb3.train import train

ENV_ID = "recoworld/Retention-v0"


def mean_return(recommender_for, users: int = 64, seed: int = 1234) -> float:
    """Mean return of each user's first episode (the same users for every recommender)."""
    env = gym.make_vec(ENV_ID, num_envs=users, vectorization_mode="vector_entry_point")
    rec = recommender_for(env)
    obs, info = env.reset(seed=seed)
    total, live = np.zeros(users), np.ones(users, bool)
    while live.any():
        obs, reward, terminated, truncated, info = env.step(rec.recommend(obs, info).action)
        total[live] += reward[live]
        rec.reset(terminated | truncated)
        live &= ~(terminated | truncated)
    return float(total.mean())


def main(timesteps: int, out: Path) -> None:
    result = train("ppo", ENV_ID, timesteps, seed=0, n_envs=8, out_dir=out, eval_episodes=8)
    print(f"trained PPO for {timesteps} steps in {result.seconds:.0f}s; run folder {out}/")
    ppo = mean_return(lambda env: SB3Recommender(result.model))
    popular = mean_return(lambda env: make_recommender("popularity", env))
    print(f"mean return on 64 users: PPO {ppo:.1f}, popularity {popular:.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--timesteps", type=int, default=20_000)
    ap.add_argument("--out", type=Path, default=Path("runs") / "example-ppo")
    args = ap.parse_args()
    main(args.timesteps, args.out)
