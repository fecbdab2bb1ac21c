"""Persistent on-disk cache of successful conversations, so a rerun is free and identical.

One JSON file per conversation, named by the sha256 of what determines the reply: model, messages,
temperature, seed, schema and tool names. It holds only the final result (decoded reply, raw text,
tool calls, token counts) — never headers, URLs or keys. Writes go to a temporary file that is then
renamed, so a crash or a concurrent writer never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from recoworld.errors import ConfigError
from recoworld.llm.records import ChatRequest

_VERSION = 1  # bump when the stored layout changes; old entries are then ignored


def cache_key(model: str, temperature: float, seed: int | None, request: ChatRequest) -> str:
    """sha256 hex digest of everything that determines a conversation's reply."""
    payload = {
        "v": _VERSION,
        "model": model,
        "messages": request.messages,
        "temperature": float(temperature),
        "seed": seed,
        "schema": {"name": request.schema.name, "schema": request.schema.schema},
        "tools": [t.name for t in request.tools],
        "max_tool_rounds": request.max_tool_rounds,
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """A folder of cached results, ``<dir>/<key[:2]>/<key>.json``.

    Args:
        directory: created if missing.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cache_dir={str(directory)!r} cannot be created ({exc}); pick a writable folder"
            ) from exc

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None when absent or unreadable (a corrupt entry is a miss)."""
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) and entry.get("v") == _VERSION else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` (JSON-able) atomically under ``key``."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**entry, "v": _VERSION}, ensure_ascii=False, default=str)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("??/*.json"))
