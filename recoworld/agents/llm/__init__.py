"""The LLM agentic recommender: an LLM that calls catalog tools to pick slates.

`LLMRecommender` (registered as ``"llm"``), its tools (`CatalogTools`, `UserHistory`) and
prompts. Importing this package does not import ``openai``: the client is built only when a
recommender is (extra ``llm``).
"""

from recoworld.agents.llm.prompts import REPLY_SCHEMA, SCHEMA_NAME, RecommenderReply, parse_reply
from recoworld.agents.llm.recommender import LLMRecommender, repair_slate
from recoworld.agents.llm.tools import CatalogTools, TextIndex, UserHistory, minilm_encoder

__all__ = [
    "REPLY_SCHEMA",
    "SCHEMA_NAME",
    "CatalogTools",
    "LLMRecommender",
    "RecommenderReply",
    "TextIndex",
    "UserHistory",
    "minilm_encoder",
    "parse_reply",
    "repair_slate",
]
