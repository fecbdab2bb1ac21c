"""Stable-Baselines3 integration (needs the ``rl`` extra: torch and stable-baselines3).

- `to_sb3_vec_env`: the native vector env as an SB3 ``VecEnv`` (``vec_env.py``);
- `CandidateExtractor` and `CandidatePolicy`: networks for "K candidates × features"
  observations (``extractor.py``, ``policies.py``);
- ``recoworld.agents.sb3.train.train`` and the algorithm registry `ALGORITHMS` /
  `register_algorithm` (``train.py``; the module shares the function's name, so import the
  function from it);
- `SB3Recommender` and `load_policy`: trained models as recommenders (``recommender.py``).

Names are imported lazily, so ``import recoworld.agents.sb3.train`` to register an algorithm
does not load torch until a model is built.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "to_sb3_vec_env": "vec_env",
    "RecoSB3VecEnv": "vec_env",
    "NonFiniteRewardError": "vec_env",
    "CandidateExtractor": "extractor",
    "CandidatePolicy": "policies",
    "SlateDistribution": "policies",
    "SB3Recommender": "recommender",
    "load_policy": "recommender",
    "TrainResult": "train",
    "ALGORITHMS": "train",
    "register_algorithm": "train",
    "plot_learning_curve": "curves",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
