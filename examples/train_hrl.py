"""Train the hierarchical novelty agent on NoveltySeeking-v0, save it, load it back, and compare
it with random slates on the same users, with the exploration terms measured alongside.

python examples/train_hrl.py [--timesteps 20000] [--users 64] [--out runs/example-hrl]

20,000 steps take about a minute on 2 cores; `benchmarks/hrl_novelty.py` runs the full
ablation (HRL vs flat PPO, control population, exploration terms on vs off).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import recoworld  # noqa: F401  (registers the env ids)
from recoworld.agents import HierarchicalNoveltyAgent, make_recommender
from recoworld.envs import VectorExplorationReward

ENV_ID = "recoworld/NoveltySeeking-v0"


def measure(make_rec, users: int, seed: int = 4321) -> dict[str, float]:
    """Each user's first episode under ``make_rec(env)``: mean return, clicks per step and the
    exploration terms per step (the wrapper's weights are 0: it only measures)."""
    env = VectorExplorationReward(
        gym.make_vec(ENV_ID, num_envs=users, vectorization_mode="vector_entry_point")
    )
    rec = make_rec(env)
    obs, info = env.reset(seed=seed)
    sums = {k: np.zeros(users) for k in ("return", "steps", "clicks", "diversity", "novelty")}
    live = np.ones(users, bool)
    while live.any():
        obs, reward, terminated, truncated, info = env.step(rec.recommend(obs, info).action)
        sums["return"][live] += reward[live]
        sums["steps"][live] += 1
        sums["clicks"][live] += info["clicks"].sum(1)[live]
        sums["diversity"][live] += info["exploration_diversity"][live]
        sums["novelty"][live] += info["exploration_novelty"][live]
        rec.reset(terminated | truncated)
        live &= ~(terminated | truncated)
    steps = sums.pop("steps")
    return {"return": float(sums.pop("return").mean())} | {
        k: float((v / steps).mean()) for k, v in sums.items()
    }


def main(timesteps: int, users: int, out: Path) -> None:
    torch.set_num_threads(1)  # small networks: one thread is fastest on a shared CPU
    agent = HierarchicalNoveltyAgent(ENV_ID, n_envs=16, n_steps=16 if timesteps < 2048 else 64)
    agent.learn(timesteps)
    path = agent.save(out / "model.zip")
    print(f"trained HRL for {agent.num_timesteps} user-steps; saved {path}")
    shares = {k: round(v, 2) for k, v in agent.history[-1].items() if k.startswith("level_")}
    print(f"novelty levels chosen in the last rollout: {shares}")

    def trained(env):
        return HierarchicalNoveltyAgent.load(path, env, deterministic=False)

    for name, make in (("hrl", trained), ("random", lambda env: make_recommender("random", env))):
        m = measure(make, users)
        print(
            f"{name:7s} return {m['return']:6.1f}  clicks/step {m['clicks']:.3f}  "
            f"diversity {m['diversity']:.3f}  novelty {m['novelty']:.3f}"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--timesteps", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("runs") / "example-hrl")
    args = ap.parse_args()
    main(args.timesteps, args.users, args.out)
