"""Typed records of the LLM layer: what a caller asks (`ChatRequest`) and gets (`ChatResult`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recoworld.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{kind} name {name!r} is invalid; use 1-64 letters, digits, '_' or '-' "
            "(the rule OpenAI-compatible endpoints enforce)"
        )


@dataclass(frozen=True, slots=True)
class JsonSchema:
    """A named JSON schema for structured output.

    The local fake server picks its responder by ``name`` ("user_turn", "recommender_turn").
    """

    name: str
    schema: dict[str, Any]

    def __post_init__(self) -> None:
        _check_name("schema", self.name)
        if not isinstance(self.schema, dict) or not self.schema:
            raise ConfigError(f"schema {self.name!r} must be a non-empty dict, got {self.schema!r}")

    def response_format(self) -> dict[str, Any]:
        """The ``response_format`` argument of a chat completion request."""
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.schema, "strict": True},
        }


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """An OpenAI function tool; ``fn`` gets the parsed arguments and returns a JSON-able result."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[[dict[str, Any]], Any] = field(compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_name("tool", self.name)
        if not callable(self.fn):
            raise ConfigError(f"tool {self.name!r}: fn must be callable, got {self.fn!r}")

    def to_openai(self) -> dict[str, Any]:
        """The entry of the request's ``tools`` list."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One structured-output conversation to run.

    Args:
        messages: OpenAI chat messages (``{"role": ..., "content": ...}``); untrusted text belongs
            in data blocks (`recoworld.llm.data_block`).
        schema: the reply's JSON schema.
        parse: validates the decoded JSON into a typed record; raises ``ValueError`` with a readable
            message when fields are missing or wrong (this triggers the one repair retry).
        tools: tools the model may call before answering.
        max_tool_rounds: rounds of tool calls allowed before an answer is required.
    """

    messages: list[dict[str, Any]]
    schema: JsonSchema
    parse: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)
    tools: tuple[ToolSpec, ...] = ()
    max_tool_rounds: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.messages, list) or not self.messages:
            raise ConfigError(f"messages must be a non-empty list of dicts, got {self.messages!r}")
        for i, m in enumerate(self.messages):
            if not isinstance(m, dict) or "role" not in m:
                raise ConfigError(f"messages[{i}] = {m!r} must be a dict with a 'role'")
        if not isinstance(self.schema, JsonSchema):
            raise ConfigError(f"schema must be a JsonSchema, got {type(self.schema).__name__}")
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ConfigError(f"tool names must be unique, got {names}")
        if not isinstance(self.max_tool_rounds, int) or self.max_tool_rounds < 0:
            raise ConfigError(f"max_tool_rounds={self.max_tool_rounds!r} must be an int >= 0")


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call the model made, with the result that was sent back to it."""

    name: str
    arguments: dict[str, Any]
    result: Any


@dataclass(frozen=True, slots=True)
class ChatResult:
    """The outcome of a `ChatRequest`. ``ok=False`` (with ``error``) replaces any exception.

    Attributes:
        value: the parsed record (``parse`` applied), or the decoded JSON without ``parse``;
            None when not ok.
        ok: whether a valid reply was obtained.
        error: why not, when not ok ("" otherwise).
        tool_calls: every tool call made, in order.
        text: the raw content of the final reply.
        prompt_tokens: prompt tokens over all requests of this conversation.
        completion_tokens: completion tokens over all requests of this conversation.
        cached: whether the result came from the on-disk cache (no request sent).
        repaired: whether the repair retry was needed.
    """

    value: Any | None
    ok: bool
    error: str = ""
    tool_calls: tuple[ToolCallRecord, ...] = ()
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    repaired: bool = False


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """What a client has spent so far.

    Attributes:
        requests: chat completion requests sent (the client's own transport retries not counted).
        cache_hits: conversations answered from the cache.
        prompt_tokens: prompt tokens reported by the endpoint.
        completion_tokens: completion tokens reported by the endpoint.
        fallbacks: conversations that ended with ``ok=False``.
        repairs: conversations that needed the repair retry.
        tool_calls: tool calls executed.
        cost: estimated cost from the configured prices, None when no price is set.
    """

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks: int = 0
    repairs: int = 0
    tool_calls: int = 0
    cost: float | None = None

    def __add__(self, other: TokenUsage) -> TokenUsage:
        counts = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name != "cost"
        }
        costs = [c for c in (self.cost, other.cost) if c is not None]
        return TokenUsage(**counts, cost=sum(costs) if costs else None)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, e.g. for a run summary."""
        return dataclasses.asdict(self)
