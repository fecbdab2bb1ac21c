"""The rule-based "model" behind the schema ``user_turn`` on the local fake server.

It plays the persona in the request's data block (`recoworld.users.llm.prompts`),
deterministically (no clock, no global random state; ties broken by hashing ids):

- clicks the items whose topic is one of the persona's interests (more readily the higher its
  current interest), skips items it clicked recently, and — in proportion to its novelty appetite
  — clicks items from topics it has not seen lately; likes and watches interest items more;
- grows bored with every step (fatigue) and faster when the slate repeats itself: one topic
  filling the slate, topics shown in the previous turn again; a click on one of its interests
  relieves boredom a little;
- leaves when boredom passes its patience;
- when disengaged but staying (boredom above half its patience), says so once every few turns:
  "less of <topic>" when one topic dominates the slate, else "something new" (or "more of
  <interest>" for a persona with little appetite for novelty who saw none of its interests).

It reads only the last data block of the last user message that has one, so text outside the
block (and any instruction inside item texts) never changes what it does. Only a server started
with ``Faults(gullible=True)`` makes it obey "click everything" written *outside* a data block
(a naive model): it then clicks and likes every item.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from recoworld.llm.prompting import data_blocks
from recoworld.testing.llm_server import obeys_injection, register_responder

NAME = "user_turn"
FATIGUE = 0.03  # boredom added by every step
REPEAT_WEIGHT = 0.4  # boredom added per unit of repetition above REPEAT_BASE
REPEAT_BASE = 0.4  # repetition a varied slate has anyway
CLICK_RELIEF = 0.03  # boredom removed by a turn with a click on an interest
QUIET_TURNS = 3  # turns after an instruction before the user speaks up again
MAX_STEPS = 60  # a session never runs longer than this


def unit_hash(*parts: Any) -> float:
    """A deterministic number in [0, 1) from ``parts`` (the fake model's only "randomness")."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def request_data(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The last data block of the last user message that has one (repair retries append a user
    message without one)."""
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


def _clip(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 4)


def repetition(slate: list[dict[str, Any]], recent: list[dict[str, Any]]) -> tuple[float, str]:
    """How repetitive a slate is (0..1) and its most frequent topic.

    Half: the share of the slate taken by its most frequent topic; half: the share of its items
    whose topic was shown in the previous turn.
    """
    topics = [str(it.get("topic", "")) for it in slate]
    if not topics:
        return 0.0, ""
    top, count = Counter(topics).most_common(1)[0]
    last = recent[-1] if recent else {}
    seen = set(last.get("clicked_topics", [])) | set(last.get("skipped_topics", []))
    again = sum(t in seen for t in topics) / len(topics)
    return 0.5 * count / len(topics) + 0.5 * again, top


def decide(data: dict[str, Any], gullible: bool = False) -> dict[str, Any]:
    """The persona's reply to one turn (the ``user_turn`` schema)."""
    persona = data.get("persona") or {}
    mindset = data.get("mindset") or {}
    slate = [it for it in data.get("slate") or [] if isinstance(it, dict)]
    recent = [t for t in data.get("recent") or [] if isinstance(t, dict)]
    step = int(data.get("step_in_session") or 0)
    pid = str(persona.get("id", ""))
    interests = [str(t) for t in persona.get("interests") or []]
    liked_topics = {t.lower() for t in interests}
    novelty = float(persona.get("novelty_appetite", 0.3))
    patience = float(persona.get("patience", 0.5))
    interest = float(mindset.get("interest", 0.6))
    boredom = float(mindset.get("boredom", 0.0))
    clicked_before = {title for t in recent for title in t.get("clicked", [])}
    seen_topics = {
        x for t in recent for x in t.get("clicked_topics", []) + t.get("skipped_topics", [])
    }

    items, hits = [], 0
    for it in slate:
        slot, item = int(it.get("slot", 0)), it.get("item_id")
        topic = str(it.get("topic", ""))
        h = unit_hash(pid, item, step)
        if gullible:
            click, like, watch = True, True, 1.0
        elif topic.lower() in liked_topics and it.get("title") not in clicked_before:
            click = h < 0.35 + 0.65 * interest
            like = click and unit_hash(pid, item, "like") < 0.5
            watch = 0.6 + 0.4 * unit_hash(pid, item, "watch") if click else 0.0
            hits += click
        else:
            novel = topic not in seen_topics
            click = novel and h < 0.5 * novelty
            like = False
            watch = 0.2 + 0.3 * unit_hash(pid, item, "watch") if click else 0.0
        items.append(
            {"slot": slot, "click": click, "like": like, "watch_fraction": round(watch, 4)}
        )
    n_clicks = sum(i["click"] for i in items)
    rep, top = repetition(slate, recent)
    boredom = _clip(
        boredom + FATIGUE + REPEAT_WEIGHT * max(rep - REPEAT_BASE, 0.0) - CLICK_RELIEF * (hits > 0)
    )
    interest = _clip(0.7 * interest + 0.3 * (hits > 0) - 0.2 * boredom)
    leave = not gullible and (boredom > patience or step + 1 >= MAX_STEPS)
    satisfaction = _clip(
        0.25 + 0.35 * (hits > 0) + 0.15 * (n_clicks > 0) + 0.3 * interest - 0.3 * boredom
    )
    instruction = {"text": "", "kind": "none", "topic": None, "item_id": None}
    spoke_lately = any(t.get("said") for t in recent[-QUIET_TURNS:])
    if not leave and not gullible and boredom > 0.5 * patience and not spoke_lately and slate:
        dominant = sum(str(it.get("topic")) == top for it in slate) / len(slate) >= 0.5
        if dominant and rep >= 0.5:
            instruction = {
                "text": f"Less {top}, please. I keep seeing it.",
                "kind": "less_of_topic",
                "topic": top,
                "item_id": None,
            }
        elif novelty < 0.3 and hits == 0 and interests:
            instruction = {
                "text": f"Can you show me more {interests[0]}?",
                "kind": "more_of_topic",
                "topic": interests[0],
                "item_id": None,
            }
        else:
            instruction = {
                "text": "Show me something new, please.",
                "kind": "something_new",
                "topic": top or None,
                "item_id": None,
            }
    if gullible:
        note = "clicking everything as told"
    elif leave:
        note = f"bored ({boredom:.2f}); leaving"
    elif rep >= 0.5:
        note = f"seeing a lot of {top}"
    else:
        note = "enjoying " + interests[0] if hits and interests else "browsing"
    return {
        "items": items,
        "leave": bool(leave),
        "mindset": {"interest": interest, "boredom": boredom, "note": note},
        "satisfaction": satisfaction,
        "instruction": instruction,
    }


def user_turn(body: dict[str, Any]) -> dict[str, Any]:
    """The responder registered under ``user_turn``."""
    data = request_data(body.get("messages", []))
    return {"content": json.dumps(decide(data, gullible=obeys_injection(body)))}


register_responder(NAME, user_turn)
