"""Who recommends: the `Recommender` protocol and the recommenders that ship with recoworld.

Stable-Baselines3 policies live in `recoworld.agents.sb3` (extra ``rl``), imported on demand;
so does `RLIVAgent` (torch), exported lazily: ``from recoworld.agents import RLIVAgent``.
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


def __getattr__(name: str) -> object:
    # lazy: the LLM recommender's package is only imported when asked for
    if name == "LLMRecommender":
        from recoworld.agents.llm import LLMRecommender

        return LLMRecommender
    if name == "RLIVAgent":  # torch: imported on first use, so `import recoworld` stays light
        from recoworld.agents.rliv import RLIVAgent

        return RLIVAgent
    if name in ("HierarchicalNoveltyAgent", "HRLConfig"):  # torch, imported on first use
        from recoworld.agents import hrl

        return getattr(hrl, name)
    raise AttributeError(f"module 'recoworld.agents' has no attribute {name!r}")


__all__ = [
    "DiagLinUCBRecommender",
    "EpsilonGreedy",
    "GreedyRecommender",
    "HRLConfig",
    "HierarchicalNoveltyAgent",
    "InSlateThompsonRecommender",
    "InstructionFollowingRecommender",
    "LLMRecommender",
    "LinUCBRecommender",
    "OracleRecommender",
    "PopularityRecommender",
    "RLIVAgent",
    "RandomRecommender",
    "Recommender",
    "ThompsonRecommender",
    "batch_single",
    "make_recommender",
    "register_recommender",
]
