"""Who recommends: the `Recommender` protocol and recommenders."""

from recoworld.agents.base import (
    PopularityRecommender,
    RandomRecommender,
    Recommender,
    batch_single,
    make_recommender,
)

__all__ = [
    "PopularityRecommender",
    "RandomRecommender",
    "Recommender",
    "batch_single",
    "make_recommender",
]
