"""`LLMConfig`: where the endpoint is and how to talk to it. Never holds an API key."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from recoworld.errors import ConfigError, LLMError

BASE_URL_ENV = "RECOWORLD_LLM_BASE_URL"
MODEL_ENV = "RECOWORLD_LLM_MODEL"


HTTP_BACKENDS = ("auto", "aiohttp", "httpx")


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """Settings of an OpenAI-compatible chat endpoint.

    Args:
        base_url: e.g. ``"http://127.0.0.1:8000/v1"`` (vLLM, the local fake server),
            ``"http://localhost:11434/v1"`` (Ollama), ``"https://api.openai.com/v1"``.
        model: model name the endpoint serves.
        api_key_env: name of the environment variable holding the API key; the key itself is read
            when a client is built and is never stored here. Local servers need none.
        timeout_s: per-request timeout in seconds.
        max_retries: retries with exponential backoff on 429, 5xx, timeouts and connection errors
            (the openai client's own mechanism).
        concurrency: requests in flight at once in ``chat_many``.
        temperature: sampling temperature (0 for reproducible runs).
        seed: sampling seed sent to the endpoint (None: not sent); part of the cache key.
        cache_dir: folder of the on-disk response cache; None disables the cache.
        price_per_1m_input: price per million prompt tokens, for the cost estimate.
        price_per_1m_output: price per million completion tokens, for the cost estimate.
        stream: request streamed (SSE) replies and assemble them.
        max_tokens: cap on completion tokens per request (None: the endpoint's default).
        http_backend: the openai client's HTTP transport: ``"httpx"`` (the SDK's default),
            ``"aiohttp"`` (the SDK's `DefaultAioHttpClient`: less client CPU per request, the
            same turns per second within noise; compare with `benchmarks/llm_throughput.py
            --http-backend`; installed with the ``llm`` extra; it does not read proxy settings
            from the environment as httpx does), or ``"auto"`` (aiohttp when installed).
    """

    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 30.0
    max_retries: int = 3
    concurrency: int = 64
    temperature: float = 0.0
    seed: int | None = 0
    cache_dir: str | None = None
    price_per_1m_input: float | None = None
    price_per_1m_output: float | None = None
    stream: bool = False
    max_tokens: int | None = None
    http_backend: str = "httpx"

    def __post_init__(self) -> None:
        for name in ("base_url", "model"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{name}={value!r} must be a non-empty string or None")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url={self.base_url!r} must start with http:// or https://, "
                "e.g. 'http://127.0.0.1:8000/v1'"
            )
        if not isinstance(self.api_key_env, str) or not self.api_key_env:
            raise ConfigError(f"api_key_env={self.api_key_env!r} must name an environment variable")
        if not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise ConfigError(f"timeout_s={self.timeout_s!r} must be a positive number of seconds")
        for name in ("max_retries", "concurrency"):
            value = getattr(self, name)
            low = 0 if name == "max_retries" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name}={value!r} must be an int >= {low}")
        if not (isinstance(self.temperature, (int, float)) and 0 <= self.temperature <= 2):
            raise ConfigError(f"temperature={self.temperature!r} must be in [0, 2]")
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise ConfigError(f"seed={self.seed!r} must be an int or None")
        for name in ("price_per_1m_input", "price_per_1m_output"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ConfigError(f"{name}={value!r} must be a non-negative number or None")
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{name}={value!r} must be finite")
        if self.max_tokens is not None and (
            not isinstance(self.max_tokens, int) or self.max_tokens < 1
        ):
            raise ConfigError(f"max_tokens={self.max_tokens!r} must be a positive int or None")
        if self.http_backend not in HTTP_BACKENDS:
            raise ConfigError(
                f"http_backend={self.http_backend!r} is unknown; use one of {HTTP_BACKENDS}"
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> LLMConfig:
        """A config whose ``base_url`` and ``model`` default to the environment variables.

        ``RECOWORLD_LLM_BASE_URL`` and ``RECOWORLD_LLM_MODEL`` fill the fields not given in
        ``overrides``; any other field may be overridden by keyword.

        Raises:
            LLMError: base_url or model is neither given nor set in the environment.
            ConfigError: an unknown keyword or an invalid value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown LLMConfig field(s) {unknown}; known: {sorted(known)}")
        values = dict(overrides)
        for name, env in (("base_url", BASE_URL_ENV), ("model", MODEL_ENV)):
            if values.get(name) is None:
                values[name] = os.environ.get(env) or None
        missing = [n for n in ("base_url", "model") if values[n] is None]
        if missing:
            raise LLMError(
                f"no LLM endpoint configured ({' and '.join(missing)} missing): set the "
                f"environment variables {BASE_URL_ENV} and {MODEL_ENV} (e.g. {BASE_URL_ENV}="
                f"http://127.0.0.1:8000/v1 {MODEL_ENV}=fake-persona after `recoworld "
                "serve-fake-llm`), or pass base_url=... and model=..."
            )
        return cls(**values)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Estimated cost of the given tokens, None when no price is configured."""
        if self.price_per_1m_input is None and self.price_per_1m_output is None:
            return None
        return (
            prompt_tokens * (self.price_per_1m_input or 0.0)
            + completion_tokens * (self.price_per_1m_output or 0.0)
        ) / 1e6
