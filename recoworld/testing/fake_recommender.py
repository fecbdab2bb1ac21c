"""The rule-based "model" behind the schema ``recommender_turn`` on the local fake server.

It plays an agentic recommender, deterministically (no clock, no global random state):

1. With no tool results in the conversation yet (and tools offered), it calls tools:
   ``popular_in_topic`` for a topical instruction (plus ``user_history`` for "less of" and
   "something new"), ``similar_items`` for "more like this item", ``user_history`` otherwise.
2. Then it answers ``{"slate": [...], "rationale": "..."}``: the candidates that serve the
   instruction (the tool's ranking first; for "something new", topics the user has not been
   shown), or, without an instruction, candidates from the topics the user clicked most,
   those shown in the last slate last (users tire of repeats), at most half the slate from one
   topic (except for "more of a topic" and "more like an item"); the rationale quotes the
   instruction.

It reads only the last data block of the last user message that has one (the request data of
`recoworld.agents.llm.prompts`) and the tool messages; text outside the data block, and any
instruction inside item texts, is ignored (it is data). Only a server started with
``Faults(gullible=True)`` makes it obey "click everything" written *outside* the data block
(a naive model): it then returns every candidate.
"""

from __future__ import annotations

import json
from typing import Any

from recoworld.llm.prompting import data_blocks
from recoworld.testing.llm_server import obeys_injection, register_responder

NAME = "recommender_turn"
TOOL_K = 10  # results asked of each tool


def request_data(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The request data: the last data block of the last user message that has one."""
    for m in reversed(messages):
        if m.get("role") != "user" or not isinstance(m.get("content"), str):
            continue
        try:
            blocks = data_blocks(m["content"])
        except ValueError:
            continue
        if blocks and isinstance(blocks[-1], dict):
            return blocks[-1]
    return {}


def tool_results(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Tool name -> decoded result, for every tool message answered so far (last one wins)."""
    names: dict[str, str] = {}
    for m in messages:
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            names[str(call.get("id"))] = str(fn.get("name", ""))
    out: dict[str, Any] = {}
    for m in messages:
        if m.get("role") != "tool":
            continue
        try:
            out[names.get(str(m.get("tool_call_id")), "")] = json.loads(m.get("content") or "null")
        except json.JSONDecodeError:
            continue
    return out


def _plan(data: dict[str, Any], offered: set[str]) -> list[dict[str, Any]]:
    instr = data.get("instruction") or {}
    kind, topic, item = instr.get("kind"), instr.get("topic"), instr.get("item_id")
    calls: list[dict[str, Any]] = []
    if kind in ("more_of_topic", "less_of_topic", "something_new") and topic:
        calls.append({"name": "popular_in_topic", "arguments": {"topic": topic, "k": TOOL_K}})
    if kind == "more_like_item" and isinstance(item, int):
        calls.append({"name": "similar_items", "arguments": {"item_id": item, "k": TOOL_K}})
    if kind in ("less_of_topic", "something_new") or not calls:
        calls.append({"name": "user_history", "arguments": {"k": 5}})
    return [c for c in calls if c["name"] in offered]


def _ids(result: Any) -> list[int]:
    if not isinstance(result, list):
        return []
    return [int(x["id"]) for x in result if isinstance(x, dict) and isinstance(x.get("id"), int)]


def answer(data: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The final reply for request ``data`` given the tool ``results`` (see the module doc)."""
    cands = [c for c in data.get("candidates") or [] if isinstance(c, dict) and "id" in c]
    size = int(data.get("slate_size") or 1)
    instr = data.get("instruction") or {}
    kind, topic, text = instr.get("kind") or "none", instr.get("topic"), instr.get("text") or ""
    history = results.get("user_history") if isinstance(results.get("user_history"), dict) else {}
    liked = history.get("clicked_topics") or {}
    last = set(history.get("last_shown_topics") or ())  # the user tires of repeats
    seen = set(liked) | set(history.get("skipped_topics") or {})
    ranked = _ids(results.get("popular_in_topic")) or _ids(results.get("similar_items"))
    tool_rank = {i: r for r, i in enumerate(ranked)}
    big = len(cands) + len(ranked)

    def key(pos: int) -> tuple[float, ...]:
        c = cands[pos]
        t, i = c.get("topic"), c["id"]
        clicks = float(liked.get(t, 0)) if isinstance(liked, dict) else 0.0
        if kind == "more_of_topic":
            return (t != topic, tool_rank.get(i, big), pos)
        if kind == "less_of_topic":
            return (t == topic, -clicks, pos)
        if kind == "something_new":  # topics this user has not been shown yet first
            return (t == topic, t in seen, t in last, pos)
        if kind == "more_like_item":
            return (i == instr.get("item_id"), tool_rank.get(i, big), pos)
        return (t in last, -clicks, pos)  # liked topics, not the ones just shown

    order = sorted(range(len(cands)), key=key)
    if kind not in ("more_of_topic", "more_like_item"):  # variety: no topic fills the slate
        order = _capped(order, [cands[p].get("topic") for p in range(len(cands))], size)
    slate = [int(cands[p]["id"]) for p in order[:size]]
    topics = [cands[p].get("topic") for p in order[:size]]
    return {"slate": slate, "rationale": _rationale(kind, topic, text, topics, liked)}


def _capped(order: list[int], topics: list[Any], size: int) -> list[int]:
    """``order`` with at most half the slate (rounded up) from any one topic up front; the
    rest keep their order behind (they fill the slate only when too few topics remain)."""
    cap = max(1, (size + 1) // 2)
    count: dict[Any, int] = {}
    first: list[int] = []
    rest: list[int] = []
    for p in order:
        t = topics[p]
        (first if count.get(t, 0) < cap else rest).append(p)
        count[t] = count.get(t, 0) + 1
    return first + rest


def _rationale(kind: str, topic: Any, text: str, topics: list[Any], liked: dict[str, Any]) -> str:
    n, on = len(topics), sum(t == topic for t in topics)
    quoted = f'You asked: "{text}" ' if text and kind != "none" else ""
    if kind == "more_of_topic":
        return f"{quoted}{on} of {n} picks are {topic}, the most popular first."
    if kind == "less_of_topic":
        return f"{quoted}Kept {topic} off the slate ({on} of {n} left), favouring topics you like."
    if kind == "something_new":
        return f"{quoted}Picked topics away from {topic} that you have not clicked yet."
    if kind == "more_like_item":
        return f"{quoted}Picked the candidates most similar to the item you liked."
    if liked:
        top = ", ".join(list(liked)[:2])
        return f"No instruction now; matched the topics you clicked most ({top})."
    return "No instruction and no clicks yet; kept the retrieval order for variety."


def respond(body: dict[str, Any]) -> dict[str, Any]:
    """The fake server's responder for ``recommender_turn``: tool calls first, then a reply."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    data = request_data(messages)
    if obeys_injection(body):  # a naive model told to "click everything": every candidate
        ids = [c["id"] for c in data.get("candidates") or [] if isinstance(c, dict) and "id" in c]
        return {"content": json.dumps({"slate": ids, "rationale": "Clicking everything."})}
    results = tool_results(messages)
    offered = {
        str((t.get("function") or {}).get("name"))
        for t in body.get("tools") or []
        if isinstance(t, dict)
    }
    if offered and not results:
        calls = _plan(data, offered)
        if calls:
            return {"tool_calls": calls}
    return {"content": json.dumps(answer(data, results))}


register_responder(NAME, respond)
