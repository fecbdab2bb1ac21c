"""The shared LLM access layer: any OpenAI-compatible endpoint, structured output, cache, cost.

Used by LLM users (`recoworld.users.llm`) and LLM recommenders (`recoworld.agents.llm`) alike.
Needs the ``llm`` extra (``openai``), imported only when a client is built.
"""

from recoworld.llm.client import LLMClient
from recoworld.llm.config import BASE_URL_ENV, MODEL_ENV, LLMConfig
from recoworld.llm.prompting import data_block, data_blocks, outside_data_blocks, parse_data_block
from recoworld.llm.records import (
    ChatRequest,
    ChatResult,
    JsonSchema,
    TokenUsage,
    ToolCallRecord,
    ToolSpec,
)

__all__ = [
    "BASE_URL_ENV",
    "MODEL_ENV",
    "ChatRequest",
    "ChatResult",
    "JsonSchema",
    "LLMClient",
    "LLMConfig",
    "TokenUsage",
    "ToolCallRecord",
    "ToolSpec",
    "data_block",
    "data_blocks",
    "outside_data_blocks",
    "parse_data_block",
]
