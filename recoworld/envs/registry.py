"""Environment ids, registered idempotently when `recoworld` is imported."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from recoworld.envs.rewards import RewardWeights

RETURN_BONUS = 5.0  # about one session's engagement (~19 steps x 0.27 clicks + watch time)

ENV_KWARGS: dict[str, dict[str, Any]] = {
    "recoworld/Engagement-v0": {
        "users": "engagement",
        "multi_session": False,
        "max_episode_steps": 500,
    },
    "recoworld/NoveltySeeking-v0": {
        "users": "novelty_seeking",
        "multi_session": True,
        "horizon_days": 14,
    },
    "recoworld/Retention-v0": {
        "users": "retention",
        "multi_session": True,
        "horizon_days": 14,
        "rewards": RewardWeights(return_bonus=RETURN_BONUS),
    },
}


def register_envs() -> None:
    """Register every recoworld id with gymnasium (safe to call more than once)."""
    for env_id, kwargs in ENV_KWARGS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="recoworld.envs.single:RecoEnv",
            vector_entry_point="recoworld.envs.vector:RecoVectorEnv",
            kwargs=dict(kwargs),
        )
    from recoworld.replay.env import register_replay_env  # lazy: keeps this module light

    register_replay_env()
