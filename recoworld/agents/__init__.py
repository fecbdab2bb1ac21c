"""Who recommends: the `Recommender` protocol and the recommenders that ship with recoworld.

Stable-Baselines3 policies live in `recoworld.agents.sb3` (extra ``rl``), imported on demand.
"""

from recoworld.agents.bandits import (
    DiagLinUCBRecommender,
    InSlateThompsonRecommender,
    LinUCBRecommender,
    ThompsonRecommender,
)
from recoworld.agents.base import (
    PopularityRecommender,
    RandomRecommender,
    Recommender,
    batch_single,
    make_recommender,
    register_recommender,
)
from recoworld.agents.baselines import EpsilonGreedy, GreedyRecommender, OracleRecommender
from recoworld.agents.instruction import InstructionFollowingRecommender

__all__ = [
    "DiagLinUCBRecommender",
    "EpsilonGreedy",
    "GreedyRecommender",
    "InSlateThompsonRecommender",
    "InstructionFollowingRecommender",
    "LinUCBRecommender",
    "OracleRecommender",
    "PopularityRecommender",
    "RandomRecommender",
    "Recommender",
    "ThompsonRecommender",
    "batch_single",
    "make_recommender",
    "register_recommender",
]
