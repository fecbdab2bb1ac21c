"""The LLM access layer against the real local server: config, faults, repair, cache, tools."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time

import pytest

from recoworld.errors import ConfigError, LLMError
from recoworld.llm import (
    ChatRequest,
    JsonSchema,
    LLMClient,
    LLMConfig,
    TokenUsage,
    ToolSpec,
    data_block,
)
from recoworld.testing.llm_server import (
    FakeLLMServer,
    register_responder,
    request_data,
    tool_results,
)

SECRET = "sk-recoworld-test-9f8e7d6c5b4a"
SCHEMA = JsonSchema(
    "echo_turn",
    {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "label": {"type": "string"}},
        "required": ["n", "label"],
    },
)


def _echo(body: dict) -> dict:
    # deterministic: doubles the n it reads from the request's data block
    data = request_data(body)
    return {"content": json.dumps({"n": 2 * data["n"], "label": f"item-{data['n']}"})}


register_responder("echo_turn", _echo)


def request(n: int = 1, **kwargs) -> ChatRequest:
    messages = [
        {"role": "system", "content": "Answer with JSON."},
        {"role": "user", "content": "Double n.\n" + data_block({"n": n})},
    ]
    return ChatRequest(messages, SCHEMA, **kwargs)


@pytest.fixture
def server():
    with FakeLLMServer() as s:
        yield s


@pytest.fixture
def make_client(server):
    clients = []

    def make(**overrides) -> LLMClient:
        settings = {"timeout_s": 5.0, "max_retries": 2, **overrides}
        client = LLMClient(LLMConfig(server.base_url, "fake-persona", **settings))
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- configuration


def test_config_from_env(monkeypatch):
    monkeypatch.setenv("RECOWORLD_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RECOWORLD_LLM_MODEL", "qwen")
    config = LLMConfig.from_env(concurrency=8)
    assert (config.base_url, config.model, config.concurrency) == (
        "http://127.0.0.1:9/v1",
        "qwen",
        8,
    )
    assert LLMConfig.from_env(model="llama").model == "llama"


def test_config_from_env_names_the_variables_when_missing(monkeypatch):
    monkeypatch.delenv("RECOWORLD_LLM_BASE_URL", raising=False)
    monkeypatch.setenv("RECOWORLD_LLM_MODEL", "qwen")
    with pytest.raises(LLMError, match="base_url missing") as exc:
        LLMConfig.from_env()
    for name in ("RECOWORLD_LLM_BASE_URL", "RECOWORLD_LLM_MODEL", "base_url=", "model="):
        assert name in str(exc.value)
    with pytest.raises(ConfigError, match="unknown LLMConfig field"):
        LLMConfig.from_env(base_url="http://x/v1", modle="typo")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "localhost:8000"}, "must start with http"),
        ({"model": ""}, "model=''"),
        ({"timeout_s": 0}, "timeout_s=0"),
        ({"max_retries": -1}, "max_retries=-1"),
        ({"concurrency": 0}, "concurrency=0"),
        ({"temperature": 3}, "temperature=3"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"price_per_1m_input": -1}, "price_per_1m_input=-1"),
        ({"max_tokens": 0}, "max_tokens=0"),
    ],
)
def test_bad_config_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LLMConfig(**kwargs)


def test_client_without_endpoint_says_how_to_configure():
    with pytest.raises(LLMError, match="RECOWORLD_LLM_BASE_URL"):
        LLMClient(LLMConfig(model="m"))


def test_endpoint_down_is_a_clear_error_before_the_run():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with LLMClient(LLMConfig(url, "m", max_retries=0, timeout_s=2)) as client:
        with pytest.raises(LLMError, match="did not answer") as exc:
            client.check()
        assert url in str(exc.value) and "start a server" in str(exc.value)
        result = client.chat(request())  # mid-run trouble never raises
    # httpx reports a refused connection as a connection error, the aiohttp transport as a
    # timeout: either way a failed result that says what happened
    assert not result.ok and re.search("APIConnectionError|APITimeoutError", result.error)


def test_check_lists_models(make_client):
    assert make_client().check() == ["fake-persona"]


# ---------------------------------------------------------------- replies, faults, repair


def test_chat_parses_and_counts_tokens(make_client):
    client = make_client(price_per_1m_input=2.0, price_per_1m_output=10.0)
    result = client.chat(request(4, parse=lambda d: (d["n"], d["label"])))
    assert result.ok and result.value == (8, "item-4") and not result.repaired
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    usage = client.usage
    assert (usage.requests, usage.fallbacks, usage.prompt_tokens) == (1, 0, result.prompt_tokens)
    expected = (2.0 * usage.prompt_tokens + 10.0 * usage.completion_tokens) / 1e6
    assert usage.cost == pytest.approx(expected)
    assert make_client().usage.cost is None


def test_chat_many_keeps_order(make_client):
    results = make_client(concurrency=4).chat_many([request(n) for n in range(10)])
    assert [r.value["n"] for r in results] == [2 * n for n in range(10)]


@pytest.mark.parametrize("kind", ["malformed", "truncated", "missing_fields"])
def test_bad_content_once_is_repaired(server, make_client, kind):
    client = make_client()
    server.set_faults(kind=kind, next_n=1)
    result = client.chat(request(3))
    assert result.ok and result.repaired and result.value == {"n": 6, "label": "item-3"}
    assert server.stats["chat"] == 2
    assert (client.usage.repairs, client.usage.fallbacks) == (1, 0)


@pytest.mark.parametrize("kind", ["malformed", "truncated", "missing_fields"])
def test_bad_content_that_persists_falls_back(server, make_client, kind):
    client = make_client()
    server.set_faults(kind=kind, every_k=1)
    result = client.chat(request(3))
    assert not result.ok and result.value is None and "after one repair retry" in result.error
    assert server.stats["chat"] == 2  # the reply, then exactly one repair
    assert (client.usage.repairs, client.usage.fallbacks) == (1, 1)


def test_parse_errors_trigger_the_repair(make_client):
    calls = []

    def picky(d: dict) -> int:
        calls.append(d)
        if len(calls) == 1:
            raise ValueError("label must name an item")
        return d["n"]

    result = make_client().chat(request(5, parse=picky))
    assert result.ok and result.repaired and result.value == 10 and len(calls) == 2


@pytest.mark.parametrize("backend", ["httpx", "aiohttp"])
@pytest.mark.parametrize("kind", ["429", "500", "timeout"])
def test_transport_faults_once_are_retried_by_the_client(server, make_client, kind, backend):
    client = make_client(timeout_s=0.3, max_retries=1, http_backend=backend)
    server.set_faults(kind=kind, next_n=1, hang_s=5)
    result = client.chat(request(2))
    assert result.ok and not result.repaired and result.value["n"] == 4
    assert server.stats["faults"][kind] == 1 and server.stats["chat"] == 2
    assert client.usage.fallbacks == 0


@pytest.mark.parametrize("kind", ["429", "500", "timeout"])
def test_transport_faults_that_persist_fall_back(server, make_client, kind):
    client = make_client(timeout_s=0.3, max_retries=1)
    server.set_faults(kind=kind, every_k=1, hang_s=5)
    result = client.chat(request(2))
    assert not result.ok and result.error.startswith("request failed")
    assert server.stats["chat"] == 2  # the request and the client's one retry
    assert client.usage.fallbacks == 1


def test_streaming_gives_the_same_result(server, make_client):
    plain = make_client().chat(request(7))
    streamed = make_client(stream=True).chat(request(7))
    assert streamed.ok and streamed.value == plain.value and streamed.text == plain.text
    assert streamed.completion_tokens == plain.completion_tokens > 0
    assert server.stats["streamed"] == 1


# ---------------------------------------------------------------- cache and secrets


def test_warm_cache_sends_no_request_and_returns_the_same(server, make_client, tmp_path):
    cold = make_client(cache_dir=str(tmp_path)).chat_many([request(n) for n in range(5)])
    sent = server.stats["chat"]
    warm_client = make_client(cache_dir=str(tmp_path))
    warm = warm_client.chat_many([request(n) for n in range(5)])
    assert server.stats["chat"] == sent == 5
    assert all(w.cached and not c.cached for w, c in zip(warm, cold, strict=True))
    strip = lambda r: (r.value, r.text, r.tool_calls, r.prompt_tokens, r.completion_tokens)  # noqa: E731
    assert [strip(w) for w in warm] == [strip(c) for c in cold]
    assert (warm_client.usage.cache_hits, warm_client.usage.requests) == (5, 0)
    # another seed or temperature is another key
    make_client(cache_dir=str(tmp_path), seed=1).chat(request(0))
    assert server.stats["chat"] == 6


def test_failed_results_are_not_cached(server, make_client, tmp_path):
    server.set_faults(kind="malformed", every_k=1)
    assert not make_client(cache_dir=str(tmp_path)).chat(request(1)).ok
    assert not list(tmp_path.rglob("*.json"))
    server.set_faults(None)
    assert make_client(cache_dir=str(tmp_path)).chat(request(1)).ok
    assert len(list(tmp_path.rglob("*.json"))) == 1


def test_api_key_never_leaks(server, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("RECOWORLD_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    config = LLMConfig(
        server.base_url,
        "fake-persona",
        api_key_env="RECOWORLD_TEST_KEY",
        cache_dir=str(tmp_path),
        timeout_s=0.3,
        max_retries=1,
    )
    with LLMClient(config) as client:
        results = [client.chat(request(1)), client.chat(request(1))]
        server.set_faults(kind="500", every_k=1)
        results.append(client.chat(request(2)))
        assert client._openai.api_key == SECRET  # the key does reach the endpoint's client
        texts = [repr(client), repr(config), repr(client.usage), *map(repr, results)]
    texts += [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
    texts.append(caplog.text)
    assert results[1].cached and not results[2].ok and caplog.text
    assert not [t for t in texts if SECRET in t]


# ---------------------------------------------------------------- concurrency and loops


def test_concurrent_requests_overlap(server, make_client):
    server.latency_s = 0.2
    client = make_client()
    client.chat(request(0))  # warm up connections
    start = time.perf_counter()
    results = client.chat_many([request(n) for n in range(64)])
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results)
    assert elapsed < 3.0, f"64 requests of 0.2 s took {elapsed:.2f} s: they were not concurrent"


def test_works_from_inside_a_running_event_loop(make_client):
    client = make_client()

    async def caller() -> list:
        blocking = client.chat_many([request(1), request(2)])
        awaited = await asyncio.gather(client.achat(request(3)), client.achat(request(4)))
        return [r.value["n"] for r in (*blocking, *awaited)]

    assert asyncio.run(caller()) == [2, 4, 6, 8]


# ---------------------------------------------------------------- tools


def _tool_responder(body: dict) -> dict:
    done = tool_results(body)
    if not done:
        return {
            "tool_calls": [
                {"name": "add", "arguments": {"a": 2, "b": 3}},
                {"name": "explode", "arguments": {}},
            ]
        }
    if len(done) == 2:
        return {"tool_calls": [{"name": "add", "arguments": {"a": done[0][1], "b": 10}}]}
    return {"content": json.dumps({"n": done[-1][1], "label": done[1][1]["error"]})}


register_responder("tool_turn", _tool_responder)
TOOL_SCHEMA = JsonSchema("tool_turn", SCHEMA.schema)


def _explode(args: dict) -> int:
    raise KeyError("no such item")


TOOLS = (
    ToolSpec("add", "add a and b", {"type": "object"}, lambda a: a["a"] + a["b"]),
    ToolSpec("explode", "always fails", {"type": "object"}, _explode),
)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_loop_records_calls(make_client, stream):
    client = make_client(stream=stream)
    messages = [{"role": "user", "content": data_block({"n": 0})}]
    result = client.chat(ChatRequest(messages, TOOL_SCHEMA, tools=TOOLS))
    assert result.ok and result.value["n"] == 15
    assert [(c.name, c.arguments, c.result) for c in result.tool_calls] == [
        ("add", {"a": 2, "b": 3}, 5),
        ("explode", {}, {"error": "KeyError: 'no such item'"}),
        ("add", {"a": 5, "b": 10}, 15),
    ]
    assert "no such item" in result.value["label"]
    assert (client.usage.requests, client.usage.tool_calls) == (3, 3)


def test_tool_rounds_are_bounded(make_client):
    client = make_client()
    messages = [{"role": "user", "content": data_block({"n": 0})}]
    result = client.chat(ChatRequest(messages, TOOL_SCHEMA, tools=TOOLS, max_tool_rounds=1))
    # after one round the client asks for an answer (tool_choice "none")
    assert result.ok and len(result.tool_calls) == 2 and client.usage.requests == 2


def test_bad_requests_are_config_errors():
    with pytest.raises(ConfigError, match="non-empty list"):
        ChatRequest([], SCHEMA)
    with pytest.raises(ConfigError, match="schema name 'a b'"):
        JsonSchema("a b", {"type": "object"})
    with pytest.raises(ConfigError, match="unique"):
        ChatRequest([{"role": "user", "content": "x"}], SCHEMA, tools=(TOOLS[0], TOOLS[0]))
    with pytest.raises(ConfigError, match="max_tool_rounds=-1"):
        ChatRequest([{"role": "user", "content": "x"}], SCHEMA, max_tool_rounds=-1)


def test_token_usage_adds_up():
    a = TokenUsage(requests=1, prompt_tokens=10, cost=0.5)
    b = TokenUsage(requests=2, completion_tokens=4)
    assert a + b == TokenUsage(requests=3, prompt_tokens=10, completion_tokens=4, cost=0.5)
    assert (b + b).cost is None and (a + b).as_dict()["requests"] == 3


@pytest.mark.parametrize("backend", ["httpx", "aiohttp"])
def test_both_http_backends_answer_streamed_and_not(server, make_client, backend):
    for stream in (False, True):
        client = make_client(http_backend=backend, stream=stream)
        results = client.chat_many([request(n) for n in range(5)])
        assert [r.value["n"] for r in results] == [0, 2, 4, 6, 8]


def test_an_unknown_http_backend_names_the_choices():
    with pytest.raises(ConfigError, match=r"http_backend='curl' is unknown; use one of"):
        LLMConfig("http://127.0.0.1:1/v1", "m", http_backend="curl")
