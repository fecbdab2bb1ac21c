"""The Gymnasium face: one batched core, `RecoEnv` and `RecoVectorEnv` as thin shells."""

from recoworld.envs.candidates import CandidateMix
from recoworld.envs.config import EnvConfig
from recoworld.envs.exploration import (
    ExplorationReward,
    ExplorationWeights,
    VectorExplorationReward,
    exploration_reward,
)
from recoworld.envs.registry import ENV_KWARGS, register_envs
from recoworld.envs.rewards import RewardWeights
from recoworld.envs.single import RecoEnv
from recoworld.envs.vector import RecoVectorEnv

__all__ = [
    "ENV_KWARGS",
    "CandidateMix",
    "EnvConfig",
    "ExplorationReward",
    "ExplorationWeights",
    "RecoEnv",
    "RecoVectorEnv",
    "RewardWeights",
    "VectorExplorationReward",
    "exploration_reward",
    "register_envs",
]
