"""Conformance kit: checks that any recoworld environment must pass.

`check_env` runs Gymnasium's checker and recoworld's own contract checks on one env,
`check_vector_matches_single` proves the native vector env steps exactly like ``num_envs``
single envs, and `check_determinism` proves that a seed fixes a trajectory bit for bit.
"""

from recoworld.testing.checks import (
    HIDDEN_STATE,
    INFO_KEYS,
    OBS_KEYS,
    check_determinism,
    check_env,
    check_vector_matches_single,
    random_action,
)
from recoworld.testing.recommender import check_recommender

__all__ = [
    "HIDDEN_STATE",
    "INFO_KEYS",
    "OBS_KEYS",
    "check_determinism",
    "check_env",
    "check_recommender",
    "check_vector_matches_single",
    "random_action",
]
