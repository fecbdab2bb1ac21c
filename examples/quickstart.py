"""Step one simulated user and a batch of users with random slates.

python examples/quickstart.py [--steps 200]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np


def main(steps: int = 200) -> None:
    env = gym.make("recoworld:recoworld/Retention-v0")
    obs, info = env.reset(seed=0)
    total, sessions = 0.0, 1
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        if info["instruction"]:
            print(f"day {info['day']} session {info['session']}: {info['instruction']}")
        if info["left"]:
            sessions += 1
            print(f"  left; returns in {info['return_days']} day(s)")
        if terminated or truncated:
            obs, info = env.reset()
    print(f"single user: {steps} steps, {sessions} sessions, return {total:.1f}")

    envs = gym.make_vec(
        "recoworld:recoworld/Retention-v0", num_envs=512, vectorization_mode="vector_entry_point"
    )
    obs, info = envs.reset(seed=0)
    clicks = 0
    for _ in range(steps // 4):
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        clicks += int(info["clicks"].sum())
    print(f"512 users: click rate {clicks / (512 * (steps // 4)):.3f} per step")
    print("observation:", {k: v.shape for k, v in obs.items()}, np.float32)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    main(ap.parse_args().steps)
