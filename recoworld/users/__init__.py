"""Who is simulated: the user model protocol, the parametric user, presets and populations."""

from recoworld.users.base import UserModel
from recoworld.users.parametric import ParametricUser
from recoworld.users.params import UserParams
from recoworld.users.population import Population, make_population
from recoworld.users.presets import engagement, novelty_seeking, preset, retention
from recoworld.users.state import UserState

__all__ = [
    "ParametricUser",
    "Population",
    "UserModel",
    "UserParams",
    "UserState",
    "engagement",
    "make_population",
    "novelty_seeking",
    "preset",
    "retention",
]
