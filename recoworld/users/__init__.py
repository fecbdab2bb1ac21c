"""Who is simulated: the user model protocol, the parametric user, presets and populations."""

from recoworld.users.author import AuthorFunnel, user_author
from recoworld.users.base import UserModel
from recoworld.users.parametric import ParametricUser
from recoworld.users.params import UserParams
from recoworld.users.population import Population, make_population
from recoworld.users.presets import engagement, novelty_seeking, preset, retention
from recoworld.users.state import UserState

__all__ = [
    "AuthorFunnel",
    "LLMUser",
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
    "user_author",
]


def __getattr__(name: str) -> object:
    # LLMUser is exported lazily, so importing recoworld.users stays light (and never imports
    # the llm layer or openai) until it is asked for.
    if name == "LLMUser":
        from recoworld.users.llm import LLMUser

        return LLMUser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
