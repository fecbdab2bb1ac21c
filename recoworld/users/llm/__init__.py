"""LLM users: personas driven by any OpenAI-compatible chat endpoint (the ``llm`` extra).

Importing this package does not import ``openai``; a client is built when a model connects.
"""

from recoworld.users.llm.memory import Mindset, SessionSummary, TurnRecord, UserMemory
from recoworld.users.llm.mixed import MixedUsers, usage_of
from recoworld.users.llm.persona import (
    ParametricPersonas,
    Persona,
    PersonaList,
    PersonaTemplates,
    load_personas,
    patience_of,
    save_personas,
)
from recoworld.users.llm.prompts import SCHEMA_NAME, UserTurn, parse_turn, user_turn_schema
from recoworld.users.llm.user import LLMUser, resolve_config, satisfaction_scale

__all__ = [
    "SCHEMA_NAME",
    "LLMUser",
    "Mindset",
    "MixedUsers",
    "ParametricPersonas",
    "Persona",
    "PersonaList",
    "PersonaTemplates",
    "SessionSummary",
    "TurnRecord",
    "UserMemory",
    "UserTurn",
    "load_personas",
    "parse_turn",
    "patience_of",
    "resolve_config",
    "satisfaction_scale",
    "save_personas",
    "usage_of",
    "user_turn_schema",
]
