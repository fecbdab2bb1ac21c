"""recoworld: Gymnasium environments where simulated users meet pluggable recommenders."""

from recoworld.catalog import Catalog
from recoworld.envs import RecoEnv, RecoVectorEnv, register_envs
from recoworld.simulation import SimulationResult, simulate

__version__ = "0.1.0"

register_envs()

__all__ = [
    "Catalog",
    "RecoEnv",
    "RecoVectorEnv",
    "SimulationResult",
    "__version__",
    "register_envs",
    "simulate",
]
