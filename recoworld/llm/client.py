"""`LLMClient`: structured-output conversations with any OpenAI-compatible endpoint.

One conversation = one `ChatRequest`: up to ``max_tool_rounds`` rounds of tool calls, a final JSON
reply checked against the schema and the request's ``parse``, one repair retry when that fails,
and ``ok=False`` when the repair fails too or the endpoint does not answer (after the openai
client's own retries with backoff on 429, 5xx, timeouts and connection errors). Nothing raises
mid-run.

All requests run on one ``AsyncOpenAI`` client inside a private event loop in a daemon thread:
``chat`` and ``chat_many`` submit to it and wait, so they behave the same whether or not the caller
is itself inside a running event loop, and a semaphore bounds the requests in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import os
import threading
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from recoworld.errors import ConfigError, LLMError, require
from recoworld.llm.cache import ResponseCache, cache_key
from recoworld.llm.config import BASE_URL_ENV, MODEL_ENV, LLMConfig
from recoworld.llm.prompting import repair_message
from recoworld.llm.records import ChatRequest, ChatResult, TokenUsage, ToolCallRecord
from recoworld.llm.schema import validate
from recoworld.llm.usage import UsageMeter

log = logging.getLogger("recoworld.llm")
T = TypeVar("T")
CONNECTIONS_PER_POOL = 8
NO_KEY = "unused"  # sent when no key is set: local servers ignore it, the openai client needs one


class _LoopThread:
    """A private event loop running in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        with self._lock:
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                self.thread = threading.Thread(
                    target=self.loop.run_forever, name="recoworld-llm", daemon=True
                )
                self.thread.start()
            if threading.current_thread() is self.thread:
                coro.close()
                raise LLMError("LLMClient.chat was called from inside one of its own tools")
            return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, openai_clients: list[Any]) -> None:
        with self._lock:
            loop, thread, self.loop, self.thread = self.loop, self.thread, None, None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(_close_all(openai_clients), loop).result(timeout=5)
        except Exception:  # closing is best effort: the process may be shutting down
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


def _aiohttp_client(openai: Any, backend: str) -> list[Any]:
    """``[the SDK's aiohttp transport]`` when ``backend`` ("auto", "aiohttp", "httpx") asks for
    it and it is installed, else ``[]`` (httpx). One aiohttp pool serves every request at about
    40% less client CPU per request than httpx."""
    if backend == "httpx":
        return []
    try:
        import aiohttp  # noqa: F401

        return [openai.DefaultAioHttpClient()]
    except (ImportError, RuntimeError, AttributeError) as exc:  # no aiohttp, or an older SDK
        if backend == "aiohttp":
            raise LLMError(
                f"http_backend='aiohttp' is not available ({exc}): pip install "
                "'recoworld[llm]' (openai with aiohttp), or use http_backend='httpx'"
            ) from None
        return []


def _tls_context() -> Any:
    """The TLS context the openai client would build for itself (one per client otherwise)."""
    import httpx2  # the openai SDK's HTTP library

    make = getattr(httpx2, "create_ssl_context", None)
    return make() if make is not None else True


async def _close_all(openai_clients: list[Any]) -> None:
    await asyncio.gather(*(c.close() for c in openai_clients))


@dataclass
class _Conversation:
    """Mutable state of one running conversation."""

    messages: list[dict[str, Any]]
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    rounds: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _strip_fence(text: str) -> str:
    # small local models often wrap JSON in a ```json fence despite response_format
    text = text.strip()
    if text.startswith("```") and text.endswith("```"):
        text = text[3:-3]
        if text.startswith("json"):
            text = text[4:]
    return text.strip()


def _message(response: Any) -> tuple[str, list[tuple[str, str, str]]]:
    """(content, [(call id, tool name, arguments json)]) of a chat completion's first choice."""
    if not isinstance(response, dict):
        raise TypeError(f"the endpoint answered {str(response)[:80]!r}, not a chat completion")
    choices = response.get("choices") or [{}]
    message = choices[0].get("message") or {}
    calls = []
    for c in message.get("tool_calls") or []:
        function = c.get("function")
        if isinstance(function, dict):
            args = function.get("arguments") or ""
            if not isinstance(args, str):  # some servers send an object instead of JSON text
                args = json.dumps(args)
            calls.append((str(c.get("id", "")), str(function.get("name", "")), args))
    return message.get("content") or "", calls


def _check_requests(requests: list[Any]) -> None:
    for i, r in enumerate(requests):
        if not isinstance(r, ChatRequest):
            raise ConfigError(f"requests[{i}] is a {type(r).__name__}, expected a ChatRequest")


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON: what the model sees, and what a cache hit gives back."""
    return json.loads(
        json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    )


class LLMClient:
    """Client of one OpenAI-compatible chat endpoint.

    Args:
        config: the endpoint's settings; the API key is read from ``config.api_key_env`` here and
            only handed to the openai client (never stored in a repr, log, cache or record).

    Raises:
        LLMError: ``base_url`` or ``model`` is not configured.
        MissingExtraError: the ``openai`` package is missing.

    Example:
        >>> from recoworld.testing.llm_server import FakeLLMServer      # doctest: +SKIP
        >>> with FakeLLMServer() as server, LLMClient(LLMConfig(server.base_url, "fake")) as llm:
        ...     llm.check()
        ...     result = llm.chat(ChatRequest(messages, JsonSchema("answer", schema)))
    """

    def __init__(self, config: LLMConfig) -> None:
        if not isinstance(config, LLMConfig):
            raise LLMError(f"config must be an LLMConfig, got {type(config).__name__}")
        if config.base_url is None or config.model is None:
            raise LLMError(
                f"LLMConfig(base_url={config.base_url!r}, model={config.model!r}) has no endpoint: "
                f"pass base_url=... and model=..., or set {BASE_URL_ENV} and {MODEL_ENV} and use "
                "LLMConfig.from_env()"
            )
        openai = require("openai", "llm")
        self.config = config
        api_key = os.environ.get(config.api_key_env) or NO_KEY
        http_clients = _aiohttp_client(openai, config.http_backend)
        if not http_clients:
            # Several small connection pools instead of one big one: httpcore scans every
            # connection of its pool on each request, which made one 64-connection pool
            # CPU-bound on the client. They share one TLS context, the slow part of building one.
            tls = _tls_context()
            http_clients = [
                openai.DefaultAsyncHttpxClient(verify=tls)  # type: ignore[attr-defined]
                for _ in range(-(-config.concurrency // CONNECTIONS_PER_POOL))
            ]
        self._shards = [
            openai.AsyncOpenAI(  # type: ignore[attr-defined]
                base_url=config.base_url,
                api_key=api_key,
                timeout=config.timeout_s,
                max_retries=config.max_retries,
                http_client=http,
            )
            for http in http_clients
        ]
        self._openai = self._shards[0]
        self._turn = itertools.count()
        self._cache = ResponseCache(config.cache_dir) if config.cache_dir else None
        self._meter = UsageMeter(config.cost)
        self._runner = _LoopThread()
        self._semaphore: asyncio.Semaphore | None = None
        self._finalizer = weakref.finalize(self, self._runner.stop, self._shards)

    def __repr__(self) -> str:
        return (
            f"LLMClient(base_url={self.config.base_url!r}, model={self.config.model!r}, "
            f"cache_dir={self.config.cache_dir!r})"
        )

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close connections and stop the client's event-loop thread (it restarts on next use)."""
        self._runner.stop(self._shards)
        self._semaphore = None  # bound to the stopped loop

    @property
    def usage(self) -> TokenUsage:
        """Requests, cache hits, tokens, fallbacks, repairs and estimated cost so far."""
        return self._meter.snapshot()

    def reset_usage(self) -> None:
        """Start counting usage from zero."""
        self._meter.reset()

    # ------------------------------------------------------------------ public calls

    def check(self, timeout_s: float = 10.0) -> list[str]:
        """Ask the endpoint for its models (``GET /models``) before a run.

        Returns:
            The model ids the endpoint lists (a warning is logged when ``config.model`` is not
            among them: some servers, like llama.cpp's, accept any name).

        Raises:
            LLMError: the endpoint did not answer, or rejected the API key.
        """
        try:
            ids = self._runner.submit(self._list_models(timeout_s)).result()
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            if status == 404:  # answered, but without a models route: usable
                return []
            hint = (
                f"the endpoint rejected the API key: set {self.config.api_key_env}"
                if status in (401, 403)
                else f"start a server or set {BASE_URL_ENV}"
            )
            raise LLMError(
                f"endpoint {self.config.base_url} did not answer: "
                f"{type(exc).__name__}: {self._scrub(str(exc))}; {hint}"
            ) from None
        if ids and self.config.model not in ids:
            log.warning("model %r is not among the endpoint's models %s", self.config.model, ids)
        return ids

    def chat(self, request: ChatRequest) -> ChatResult:
        """Run one conversation and wait for its result (never raises for endpoint trouble)."""
        _check_requests([request])
        return self._runner.submit(self._converse(request)).result()

    def chat_many(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Run conversations concurrently (at most ``config.concurrency`` requests in flight).

        Returns:
            One result per request, in the order given.
        """
        requests = list(requests)
        if not requests:
            return []
        _check_requests(requests)
        return self._runner.submit(self._gather(requests)).result()

    async def achat(self, request: ChatRequest) -> ChatResult:
        """`chat` for callers that are coroutines: awaits without blocking their event loop."""
        _check_requests([request])
        return await asyncio.wrap_future(self._runner.submit(self._converse(request)))

    # ------------------------------------------------------------------ internals

    def _scrub(self, text: str) -> str:
        key = self._openai.api_key
        return text.replace(key, "***") if key and key != NO_KEY and len(key) >= 4 else text

    async def _list_models(self, timeout_s: float) -> list[str]:
        client = self._openai.with_options(timeout=timeout_s, max_retries=0)
        page = await client.models.list()
        return [m.id for m in page.data]

    async def _gather(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return list(await asyncio.gather(*(self._converse(r) for r in requests)))

    async def _converse(self, request: ChatRequest) -> ChatResult:
        key = None
        if self._cache is not None:
            key = cache_key(
                self.config.model or "", self.config.temperature, self.config.seed, request
            )
            hit = self._from_cache(self._cache.get(key), request)
            if hit is not None:
                self._meter.add(cache_hits=1)
                return hit
        state = _Conversation(messages=list(request.messages))
        try:
            result, data = await self._run(request, state)
        except Exception as exc:  # endpoint trouble after the client's retries, or a bad payload
            result, data = self._failed(state, f"request failed: {type(exc).__name__}: {exc}"), None
        self._meter.add(
            fallbacks=not result.ok,
            repairs=result.repaired,
            tool_calls=len(result.tool_calls),
        )
        if not result.ok:
            log.warning("LLM fallback (schema %r): %s", request.schema.name, result.error)
        elif key is not None and self._cache is not None:
            try:
                self._cache.put(key, self._to_cache(result, data))
            except OSError as exc:  # a full disk costs the cache entry, not the run
                log.warning("could not write the LLM cache entry: %s", exc)
        return result

    async def _run(self, request: ChatRequest, state: _Conversation) -> tuple[ChatResult, Any]:
        text = await self._answer(request, state)
        data, value, error = self._decode(text, request)
        repaired = bool(error)
        if error:
            state.messages += [
                {"role": "assistant", "content": text},
                repair_message(error, request.schema.name),
            ]
            text = await self._answer(request, state)
            data, value, error = self._decode(text, request)
            if error:
                error = f"invalid reply after one repair retry: {error}"
                return self._failed(state, error, text, repaired=True), None
        result = ChatResult(
            value=value,
            ok=True,
            tool_calls=tuple(state.tool_calls),
            text=text,
            prompt_tokens=state.prompt_tokens,
            completion_tokens=state.completion_tokens,
            repaired=repaired,
        )
        return result, data

    def _failed(
        self, state: _Conversation, error: str, text: str = "", repaired: bool = False
    ) -> ChatResult:
        return ChatResult(
            value=None,
            ok=False,
            error=self._scrub(error),
            tool_calls=tuple(state.tool_calls),
            text=text,
            prompt_tokens=state.prompt_tokens,
            completion_tokens=state.completion_tokens,
            repaired=repaired,
        )

    async def _answer(self, request: ChatRequest, state: _Conversation) -> str:
        """Request until the model answers instead of calling tools; returns the answer's text."""
        while True:
            use_tools = bool(request.tools) and state.rounds < request.max_tool_rounds
            text, calls = await self._complete(request, state, use_tools)
            if not calls or not use_tools:
                return text
            state.rounds += 1
            state.messages.append(
                {
                    "role": "assistant",
                    "content": text or None,
                    "tool_calls": [
                        {"id": cid, "type": "function", "function": {"name": n, "arguments": a}}
                        for cid, n, a in calls
                    ],
                }
            )
            for cid, name, arguments in calls:
                record = self._call_tool(request, name, arguments)
                state.tool_calls.append(record)
                state.messages.append(
                    {"role": "tool", "tool_call_id": cid, "content": json.dumps(record.result)}
                )

    def _call_tool(self, request: ChatRequest, name: str, arguments: str) -> ToolCallRecord:
        tools = {t.name: t for t in request.tools}
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            return ToolCallRecord(name, {}, {"error": f"arguments are not valid JSON: {exc}"})
        if not isinstance(args, dict):
            return ToolCallRecord(name, {}, {"error": f"arguments must be an object, got {args!r}"})
        if name not in tools:
            return ToolCallRecord(
                name, args, {"error": f"unknown tool {name!r}; use one of {list(tools)}"}
            )
        try:
            result = _jsonable(tools[name].fn(args))
        except Exception as exc:  # a bad call is reported to the model, which may try again
            result = {"error": f"{type(exc).__name__}: {exc}"}
        return ToolCallRecord(name, args, result)

    async def _complete(
        self, request: ChatRequest, state: _Conversation, use_tools: bool
    ) -> tuple[str, list[tuple[str, str, str]]]:
        """One chat completion; returns (content, [(call id, tool name, arguments json)])."""
        cfg = self.config
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": state.messages,
            "response_format": request.schema.response_format(),
            "temperature": cfg.temperature,
        }
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        if cfg.max_tokens is not None:
            kwargs["max_tokens"] = cfg.max_tokens
        if request.tools:
            kwargs["tools"] = [t.to_openai() for t in request.tools]
            kwargs["tool_choice"] = "auto" if use_tools else "none"
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(cfg.concurrency)
        async with self._semaphore:
            self._meter.add(requests=1)
            if cfg.stream:
                text, calls, usage = await self._streamed(kwargs)
            else:
                # the documented low-level `post` skips the SDK's per-call transform of the
                # params and its typed response models, which cost more CPU than the HTTP
                # exchange itself at 64 requests in flight; retries and timeouts still apply
                client = self._shards[next(self._turn) % len(self._shards)]
                response = await client.post("/chat/completions", cast_to=dict, body=kwargs)
                text, calls = _message(response)
                usage = response.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        state.prompt_tokens += prompt
        state.completion_tokens += completion
        self._meter.add(prompt_tokens=prompt, completion_tokens=completion)
        return text, calls

    async def _streamed(
        self, kwargs: dict[str, Any]
    ) -> tuple[str, list[tuple[str, str, str]], Any]:
        import openai

        body = {**kwargs, "stream": True, "stream_options": {"include_usage": True}}
        client = self._shards[next(self._turn) % len(self._shards)]
        stream = await client.post(
            "/chat/completions",
            cast_to=dict,
            body=body,
            stream=True,
            stream_cls=openai.AsyncStream[dict],
        )
        pieces: list[str] = []
        calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]
        usage = None
        async for chunk in stream:
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                pieces.append(delta.get("content") or "")
                for c in delta.get("tool_calls") or []:
                    slot = calls.setdefault(int(c.get("index", 0)), ["", "", ""])
                    slot[0] = c.get("id") or slot[0]
                    function = c.get("function") or {}
                    slot[1] += function.get("name") or ""
                    slot[2] += function.get("arguments") or ""
        ordered = [(cid, name, args) for cid, name, args in (calls[i] for i in sorted(calls))]
        return "".join(pieces), ordered, usage

    @staticmethod
    def _decode(text: str, request: ChatRequest) -> tuple[Any, Any, str]:
        """(decoded JSON, parsed value, error message or "")."""
        body = _strip_fence(text)
        if not body:
            return None, None, "the reply was empty"
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            return None, None, f"the reply is not valid JSON ({exc.msg} at character {exc.pos})"
        try:
            validate(data, request.schema.schema)
            value = request.parse(data) if request.parse is not None else data
        except (ValueError, TypeError, KeyError) as exc:
            return data, None, f"the reply does not match the schema: {exc}"
        return data, value, ""

    # ------------------------------------------------------------------ cache layout

    @staticmethod
    def _to_cache(result: ChatResult, data: Any) -> dict[str, Any]:
        return {
            "data": data,
            "text": result.text,
            "tool_calls": [
                {"name": c.name, "arguments": c.arguments, "result": c.result}
                for c in result.tool_calls
            ],
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "repaired": result.repaired,
        }

    @staticmethod
    def _from_cache(entry: dict[str, Any] | None, request: ChatRequest) -> ChatResult | None:
        if entry is None:
            return None
        try:
            validate(entry["data"], request.schema.schema)
            value = request.parse(entry["data"]) if request.parse is not None else entry["data"]
            calls = tuple(
                ToolCallRecord(c["name"], c["arguments"], c["result"]) for c in entry["tool_calls"]
            )
            return ChatResult(
                value=value,
                ok=True,
                tool_calls=calls,
                text=entry["text"],
                prompt_tokens=int(entry["prompt_tokens"]),
                completion_tokens=int(entry["completion_tokens"]),
                cached=True,
                repaired=bool(entry["repaired"]),
            )
        except (KeyError, TypeError, ValueError):  # an entry the current parse rejects is a miss
            return None
