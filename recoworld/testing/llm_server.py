"""A local OpenAI-compatible chat server for development, demos and tests.

`FakeLLMServer` is a real HTTP server on 127.0.0.1 (one thread per connection, so injected latency
overlaps across requests instead of queueing) speaking ``GET /v1/models`` and
``POST /v1/chat/completions``, streamed (SSE) or not. It answers deterministically: the request's
``response_format.json_schema.name`` picks a *responder*, a function ``fn(body) -> dict`` returning
``{"content": "<json text>"}`` or ``{"tool_calls": [{"name": ..., "arguments": {...}}]}``.
``recoworld.testing.fake_user`` ("user_turn") and ``recoworld.testing.fake_recommender``
("recommender_turn") register theirs when first needed; any other schema gets a reply that fills the
schema with defaults.

`Faults` inject trouble deterministically, for the next N chat requests or every k-th one:
``timeout`` (hang past the client's timeout), ``429`` (with ``Retry-After: 0``), ``500``,
``malformed`` (not JSON), ``truncated`` (JSON cut in half), ``missing_fields`` (first field
dropped); ``gullible=True`` makes responders obey "click everything" written outside any data block.

Example:
    >>> from recoworld.testing.llm_server import FakeLLMServer
    >>> with FakeLLMServer(latency_s=0.1) as server:       # doctest: +SKIP
    ...     print(server.base_url)                          # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from recoworld.errors import ConfigError
from recoworld.llm.prompting import data_blocks, outside_data_blocks
from recoworld.llm.schema import example

log = logging.getLogger("recoworld.testing.llm_server")

FAULT_KINDS = ("timeout", "429", "500", "malformed", "truncated", "missing_fields")
INJECTION_PHRASE = "click everything"
Responder = Callable[[dict[str, Any]], dict[str, Any]]

_RESPONDERS: dict[str, Responder] = {}
_LAZY_MODULES = ("recoworld.testing.fake_user", "recoworld.testing.fake_recommender")
_lazy_lock = threading.Lock()
_lazy_done = False


@dataclass(frozen=True, slots=True)
class Faults:
    """Deterministic fault injection for chat requests.

    Args:
        kind: one of `FAULT_KINDS`, or None for no fault.
        next_n: the fault hits the next ``next_n`` chat requests (counted from `set_faults`).
        every_k: the fault hits every ``every_k``-th chat request (the k-th, 2k-th, ...).
        gullible: responders obey "click everything" when it appears outside data blocks.
        hang_s: how long a ``timeout`` fault holds the request before dropping it.
    """

    kind: str | None = None
    next_n: int = 0
    every_k: int = 0
    gullible: bool = False
    hang_s: float = 30.0

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in FAULT_KINDS:
            raise ConfigError(f"fault kind {self.kind!r} is unknown; use one of {FAULT_KINDS}")
        for name in ("next_n", "every_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r} must be an int >= 0")
        if self.kind is not None and (self.next_n > 0) == (self.every_k > 0):
            raise ConfigError(
                f"fault {self.kind!r} needs exactly one of next_n > 0 or every_k > 0, "
                f"got next_n={self.next_n}, every_k={self.every_k}"
            )
        if not self.hang_s > 0:
            raise ConfigError(f"hang_s={self.hang_s!r} must be positive")

    def hits(self, index: int) -> str | None:
        """The fault kind for the chat request number ``index`` (0-based), or None."""
        if self.kind is None:
            return None
        if self.next_n:
            return self.kind if index < self.next_n else None
        return self.kind if (index + 1) % self.every_k == 0 else None

    @classmethod
    def parse(cls, spec: str) -> Faults:
        """Parse a CLI spec: ``"429:next=2"``, ``"malformed:every=5"``, ``"gullible"``."""
        if spec == "gullible":
            return cls(gullible=True)
        match = re.fullmatch(r"([a-z0-9_]+):(next|every)=(\d+)", spec)
        if not match:
            raise ConfigError(
                f"fault spec {spec!r} is invalid; write KIND:next=N or KIND:every=K with KIND in "
                f"{FAULT_KINDS}, or 'gullible'"
            )
        kind, mode, n = match.group(1), match.group(2), int(match.group(3))
        return cls(kind=kind, **{"next_n" if mode == "next" else "every_k": n})


# ---------------------------------------------------------------------- responders


def register_responder(name: str, fn: Responder) -> None:
    """Answer requests whose schema is named ``name`` with ``fn(body) -> dict`` (see module doc)."""
    if not callable(fn):
        raise ConfigError(f"responder for {name!r} must be callable, got {fn!r}")
    _RESPONDERS[name] = fn


def _load_builtin_responders() -> None:
    global _lazy_done
    with _lazy_lock:
        if _lazy_done:
            return
        _lazy_done = True
        for module in _LAZY_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    log.exception("importing %s failed", module)
            except Exception:  # a broken responder module must not take the server down
                log.exception("importing %s failed", module)


def get_responder(name: str | None) -> Responder:
    """The responder registered under ``name``, else the schema-filling generic one."""
    _load_builtin_responders()
    return _RESPONDERS.get(name or "", generic_responder)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def generic_responder(body: dict[str, Any]) -> dict[str, Any]:
    """Fill the request's schema with defaults (first enum value, minimum, empty string, ...)."""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    return {"content": json.dumps(example(schema))}


def request_data(body: dict[str, Any]) -> Any:
    """The last data block of the last user message that has one (None when none has).

    A repair retry appends a user message without data, so the search goes back past it.
    """
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            blocks = data_blocks(_text(message))
            if blocks:
                return blocks[-1]
    return None


def tool_results(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(tool name, decoded result) of every tool message in the conversation, in order."""
    names: dict[str, str] = {}
    out = []
    for m in body.get("messages", []):
        for call in m.get("tool_calls") or []:
            names[call.get("id", "")] = (call.get("function") or {}).get("name", "")
        if m.get("role") == "tool":
            try:
                result = json.loads(_text(m))
            except json.JSONDecodeError:
                result = _text(m)
            out.append((names.get(m.get("tool_call_id", ""), ""), result))
    return out


def obeys_injection(body: dict[str, Any]) -> bool:
    """Whether a gullible server's responder should "click everything" for this request.

    True only when the server runs with ``Faults(gullible=True)`` and the phrase appears in some
    message *outside* every data block (inside a data block it is just data).
    """
    if not body.get("_fake", {}).get("gullible"):
        return False
    return any(
        INJECTION_PHRASE in outside_data_blocks(_text(m)).lower() for m in body.get("messages", [])
    )


def _tokens(text: str) -> int:
    return len(text) // 4 + 1  # a deterministic stand-in for a tokenizer


# ---------------------------------------------------------------------- HTTP


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 64+ clients connect at once; the default backlog of 5 drops SYNs
    owner: FakeLLMServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close every open keep-alive connection, as a server that goes down does (else a
        client's pooled connections would keep being served after `close`)."""
        with self.connections_lock:
            conns, self.open_connections = list(self.open_connections), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection serves many requests
    timeout = 60  # idle keep-alive connections close after a minute
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        log.debug("%s " + format, self.address_string(), *args)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        error = {"error": {"message": message, "type": "fake_error", "code": status}}
        self.send_json(status, error, headers)

    def do_GET(self) -> None:
        owner = self.server.owner
        owner._count(path=self.path)
        if self.path.rstrip("/").endswith("/fake/stats"):  # for a server in another process
            self.send_json(200, owner.stats)
        elif self.path.rstrip("/").endswith("/models"):
            model = {"id": owner.model, "object": "model", "created": 0, "owned_by": "recoworld"}
            self.send_json(200, {"object": "list", "data": [model]})
        else:
            self.send_error_json(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        owner = self.server.owner
        owner._count(path=self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.send_error_json(404, f"no route POST {self.path}")
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("the body needs a 'messages' list")
        except ValueError as exc:
            self.send_error_json(400, f"bad request body: {exc}")
            return
        try:
            owner._chat(self, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout fault)
            self.close_connection = True


class FakeLLMServer:
    """Deterministic OpenAI-compatible server on 127.0.0.1, serving in a daemon thread.

    Args:
        port: TCP port; 0 picks a free one (read it from `base_url`).
        latency_s: delay added to every chat request (requests overlap; they do not queue).
        faults: fault injection, see `Faults`.
        model: the model id listed by ``/v1/models`` (requests may name any model).

    Attributes:
        base_url: ``"http://127.0.0.1:PORT/v1"``, for ``LLMConfig(base_url=...)``.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        latency_s: float = 0.0,
        faults: Faults | None = None,
        model: str = "fake-persona",
    ) -> None:
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ConfigError(f"port={port!r} must be an int in [0, 65535]")
        self.latency_s = latency_s
        self.model = model
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._faults = Faults()
        self._index = 0
        self.set_faults(faults)
        self.reset_stats()
        try:
            self._http = _HTTPServer(("127.0.0.1", port), _Handler)
        except OSError as exc:
            raise ConfigError(f"port {port} is not free ({exc}); pick another or use 0") from exc
        self._http.owner = self
        self.port = int(self._http.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown waits up to one poll interval
            name=f"fake-llm-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def latency_s(self) -> float:
        """Delay added to every chat request, in seconds."""
        return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        if not (isinstance(value, (int, float)) and value >= 0):
            raise ConfigError(f"latency_s={value!r} must be a non-negative number of seconds")
        self._latency_s = float(value)

    def __repr__(self) -> str:
        return f"FakeLLMServer(base_url={self.base_url!r}, latency_s={self.latency_s})"

    def __enter__(self) -> FakeLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving; requests held by a timeout fault are released."""
        self._closing.set()
        self._http.shutdown()
        self._http.server_close()
        self._http.drop_connections()
        self._thread.join(timeout=5)

    def set_faults(self, faults: Faults | None = None, **fields: Any) -> None:
        """Replace the fault settings (a `Faults`, or its fields by keyword); restarts the count."""
        if faults is not None and fields:
            raise ConfigError("pass either a Faults or keyword fields, not both")
        new = faults if faults is not None else Faults(**fields)
        if not isinstance(new, Faults):
            raise ConfigError(f"faults must be a Faults, got {type(new).__name__}")
        with self._lock:
            self._faults, self._index = new, 0

    @property
    def stats(self) -> dict[str, Any]:
        """Counters: ``requests`` (all HTTP requests), ``chat``, ``streamed``, ``by_path``,
        ``by_responder`` and ``faults`` (injected, by kind). Also at ``GET /v1/fake/stats``."""
        with self._lock:
            return copy.deepcopy(self._stats)

    def reset_stats(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self._stats: dict[str, Any] = {
                "requests": 0,
                "chat": 0,
                "streamed": 0,
                "by_path": Counter(),
                "by_responder": Counter(),
                "faults": Counter(),
            }

    # ------------------------------------------------------------------ request handling

    def _count(self, path: str) -> None:
        with self._lock:
            self._stats["requests"] += 1
            self._stats["by_path"][path] += 1

    def _chat(self, handler: _Handler, body: dict[str, Any]) -> None:
        schema_name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name")
        with self._lock:
            index, faults = self._index, self._faults
            self._index += 1
            fault = faults.hits(index)
            self._stats["chat"] += 1
            self._stats["streamed"] += bool(body.get("stream"))
            if fault:
                self._stats["faults"][fault] += 1
        if self._latency_s:
            self._closing.wait(self._latency_s)
        if fault == "timeout":
            self._closing.wait(faults.hang_s)
            handler.close_connection = True
            return
        # Retry-After: 0 per the contract; retry-after-ms keeps the openai client's wait short
        # (it ignores a zero Retry-After and would back off for half a second)
        retry = {"Retry-After": "0", "retry-after-ms": "1"}
        if fault == "429":
            handler.send_error_json(429, "rate limited (injected fault)", retry)
            return
        if fault == "500":
            handler.send_error_json(500, "server error (injected fault)", retry)
            return
        responder = get_responder(schema_name)
        tool_choice = body.get("tool_choice")
        try:
            reply = responder({**body, "_fake": {"gullible": faults.gullible, "index": index}})
            if "tool_calls" in reply and (tool_choice == "none" or not body.get("tools")):
                reply = generic_responder(body)  # the client asked for an answer, not more calls
        except Exception as exc:
            log.exception("responder %r failed", schema_name)
            handler.send_error_json(
                500, f"responder {schema_name!r} failed: {exc}", {"x-should-retry": "false"}
            )
            return
        with self._lock:
            self._stats["by_responder"][
                schema_name if schema_name in _RESPONDERS else "generic"
            ] += 1
        content, calls = reply.get("content"), reply.get("tool_calls") or []
        if content is not None:
            content = _corrupt(str(content), fault)
        prompt = sum(_tokens(_text(m)) for m in body["messages"])
        completion = _tokens(content or json.dumps(calls))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        tool_calls = [
            {
                "id": f"call_{index}_{i}",
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))},
            }
            for i, c in enumerate(calls)
        ]
        meta = {
            "id": f"chatcmpl-fake-{index}",
            "created": 0,
            "model": body.get("model", self.model),
        }
        finish = "tool_calls" if tool_calls and content is None else "stop"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            _send_stream(
                handler, meta, content, tool_calls, finish, usage if include_usage else None
            )
            return
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        handler.send_json(
            200, {**meta, "object": "chat.completion", "choices": [choice], "usage": usage}
        )


def _corrupt(content: str, fault: str | None) -> str:
    """Apply a content fault to a reply's JSON text."""
    if fault == "malformed":
        return "Sure! Here is my answer: " + content.replace('"', "'")
    if fault == "truncated":
        return content[: max(1, len(content) // 2)]
    if fault == "missing_fields":
        try:
            data = json.loads(content)
        except json.JSONDecodeError:
            return content
        if isinstance(data, dict) and data:
            data.pop(next(iter(data)))
        return json.dumps(data)
    return content


def _send_stream(
    handler: _Handler,
    meta: dict[str, Any],
    content: str | None,
    tool_calls: list[dict[str, Any]],
    finish: str,
    usage: dict[str, int] | None,
) -> None:
    """Send the reply as server-sent events, the content and arguments split over chunks."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**meta, "object": "chat.completion.chunk", "choices": [choice]}

    events = [chunk({"role": "assistant", "content": ""})]
    if content:
        step = max(1, len(content) // 3)
        events += [chunk({"content": content[i : i + step]}) for i in range(0, len(content), step)]
    for i, call in enumerate(tool_calls):
        args = call["function"]["arguments"]
        half = len(args) // 2
        first = {"index": i, "id": call["id"], "type": "function"}
        first["function"] = {"name": call["function"]["name"], "arguments": args[:half]}
        events.append(chunk({"tool_calls": [first]}))
        events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]}))
    events.append(chunk({}, finish))
    if usage is not None:
        events.append({**meta, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    raw = data.encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Content-Length", str(len(raw)))
    handler.end_headers()
    handler.wfile.write(raw)
