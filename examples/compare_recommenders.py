"""Compare the random and popularity recommenders on the same users (common random numbers).

python examples/compare_recommenders.py [--users 1000] [--steps 200]
"""

from __future__ import annotations

import argparse

import numpy as np

from recoworld.agents import make_recommender
from recoworld.envs import RecoVectorEnv
from recoworld.metrics import mean_ci


def run(name: str, users: int, steps: int, seed: int = 0) -> dict[str, tuple[float, float]]:
    env = RecoVectorEnv(num_envs=users, users="engagement")
    rec = make_recommender(name, env, seed=seed)
    obs, info = env.reset(seed=seed)  # same seed -> same users for every recommender
    ret = np.zeros(users)
    returns, lengths = [], []
    length = np.zeros(users, np.int64)
    for _ in range(steps):
        obs, reward, term, trunc, info = env.step(rec.recommend(obs, info).action)
        rec.reset(term | trunc)
        ret += reward
        length += 1
        done = term | trunc
        returns.extend(ret[done])
        lengths.extend(length[done])
        ret[done], length[done] = 0.0, -1
    return {"return": mean_ci(returns), "session length": mean_ci(lengths)}


def main(users: int = 1000, steps: int = 200) -> None:
    for name in ("random", "popularity"):
        stats = run(name, users, steps)
        cells = "  ".join(f"{k} {m:.2f} ± {h:.2f}" for k, (m, h) in stats.items())
        print(f"{name:11s} {cells}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    main(args.users, args.steps)
