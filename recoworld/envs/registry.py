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
    # As Retention-v0, with users played by a chat model (endpoint: llm=, llm_base_url=,
    # llm_model= or RECOWORLD_LLM_BASE_URL / RECOWORLD_LLM_MODEL; checked when the env is made).
    "recoworld/LLMUsers-v0": {
        "users": "llm",
        "multi_session": True,
        "horizon_days": 14,
        "rewards": RewardWeights(return_bonus=RETURN_BONUS),
    },
    # user–author pairs (click -> follow -> gift); its own core, see recoworld.envs.user_author
    "recoworld/UserAuthor-v0": {"users": "engagement"},
}

# ids whose env classes are not RecoEnv / RecoVectorEnv: (entry_point, vector_entry_point)
ENTRY_POINTS: dict[str, tuple[str, str]] = {
    "recoworld/UserAuthor-v0": (
        "recoworld.envs.user_author:UserAuthorEnv",
        "recoworld.envs.user_author:UserAuthorVectorEnv",
    ),
}


def register_envs() -> None:
    """Register every recoworld id with gymnasium (safe to call more than once)."""
    for env_id, kwargs in ENV_KWARGS.items():
        if env_id in gym.registry:
            continue
        entry, vector_entry = ENTRY_POINTS.get(
            env_id, ("recoworld.envs.single:RecoEnv", "recoworld.envs.vector:RecoVectorEnv")
        )
        gym.register(
            id=env_id,
            entry_point=entry,
            vector_entry_point=vector_entry,
            kwargs=dict(kwargs),
        )
    from recoworld.replay.env import register_replay_env  # lazy: keeps this module light

    register_replay_env()
