"""Prompt helpers: keep untrusted text (titles, item texts, instructions) inside data blocks.

A data block is JSON between the lines ``<<<DATA`` and ``DATA>>>``. Inside it, ``<`` and ``>`` are
written as ``\\u003c`` and ``\\u003e`` (valid JSON escapes), so no item text can close the block or
open a new one; a model, and the local fake server, can tell data from instructions by position.
"""

from __future__ import annotations

import json
from typing import Any

OPEN = "<<<DATA"
CLOSE = "DATA>>>"


def _to_jsonable(obj: Any) -> Any:
    # numpy scalars and arrays (and anything with tolist/item) become plain Python values
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"data_block cannot render {type(obj).__name__}; pass JSON-able values")


def data_block(obj: Any) -> str:
    """Render a JSON-able object as a delimited data block.

    Args:
        obj: dicts, lists, strings, numbers, booleans, None (numpy values are converted).

    Returns:
        ``"<<<DATA\\n<json>\\nDATA>>>"`` where the JSON has ``<`` and ``>`` escaped.
    """
    text = json.dumps(obj, ensure_ascii=False, default=_to_jsonable, separators=(",", ":"))
    # JSON syntax never uses < or >: both can only occur inside strings, where \u escapes are valid
    text = text.replace("<", "\\u003c").replace(">", "\\u003e")
    return f"{OPEN}\n{text}\n{CLOSE}"


def _spans(text: str) -> list[tuple[int, int, int, int]]:
    """(block start, json start, json end, block end) of every data block in ``text``."""
    spans: list[tuple[int, int, int, int]] = []
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            return spans
        body = start + len(OPEN)
        end = text.find(CLOSE, body)
        if end < 0:
            return spans
        spans.append((start, body, end, end + len(CLOSE)))
        pos = end + len(CLOSE)


def data_blocks(text: str) -> list[Any]:
    """Decode every data block of ``text``, in order (an empty list when there is none).

    Raises:
        ValueError: a block whose content is not valid JSON.
    """
    out = []
    for _, body, end, _ in _spans(text):
        try:
            out.append(json.loads(text[body:end]))
        except json.JSONDecodeError as exc:
            raise ValueError(f"data block is not valid JSON: {exc}") from exc
    return out


def parse_data_block(text: str) -> Any:
    """Decode the first data block of ``text`` (the inverse of `data_block`).

    Raises:
        ValueError: ``text`` holds no data block, or its content is not valid JSON.
    """
    spans = _spans(text)
    if not spans:
        raise ValueError(f"no data block ({OPEN} ... {CLOSE}) in the text: {text[:80]!r}")
    _, body, end, _ = spans[0]
    try:
        return json.loads(text[body:end])
    except json.JSONDecodeError as exc:
        raise ValueError(f"data block is not valid JSON: {exc}") from exc


def outside_data_blocks(text: str) -> str:
    """``text`` with every data block removed: what a model should read as instructions."""
    pieces, pos = [], 0
    for start, _, _, stop in _spans(text):
        pieces.append(text[pos:start])
        pos = stop
    pieces.append(text[pos:])
    return "".join(pieces)


def repair_message(error: str, schema_name: str) -> dict[str, str]:
    """The user message of the one repair retry after a reply that failed validation."""
    return {
        "role": "user",
        "content": (
            f"Your previous reply could not be used: {error}. Reply again with only a JSON "
            f"object that matches the {schema_name!r} schema, with every required field."
        ),
    }
