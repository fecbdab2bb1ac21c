"""Atomic writes and the catalog's on-disk format (``catalog.npz``)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.catalog import Catalog
from recoworld.errors import ReplayDataError

Progress = Callable[[int, int, str], None]


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def write_atomically(path: Path, write: Callable[[Path], Any]) -> Path:
    """Write through a temporary file in the same folder, then ``os.replace``: a failed write
    leaves any existing file untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_text(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text))


_CATALOG_ARRAYS = ("embeddings", "topic", "quality", "popularity", "creator", "length")
_CATALOG_TEXT = ("title", "text", "topic_names")


def save_catalog(catalog: Catalog, path: str | os.PathLike[str]) -> Path:
    """Write a catalog's arrays to an ``.npz`` file (atomically); `load_catalog` reads it."""
    arrays = {name: np.asarray(getattr(catalog, name)) for name in _CATALOG_ARRAYS}
    for name in _CATALOG_TEXT:
        arrays[name] = np.asarray(getattr(catalog, name), dtype=str)
    arrays["meta"] = np.asarray(json.dumps(catalog.meta, default=str))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    return write_atomically(Path(path), write)


def load_catalog(path: str | os.PathLike[str]) -> Catalog:
    """Read a catalog written by `save_catalog`.

    Raises:
        ReplayDataError: the file is missing, unreadable or lacks an array (named).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (*_CATALOG_ARRAYS, *_CATALOG_TEXT) if k not in data]
            if missing:
                raise ReplayDataError(
                    f"{path} lacks the catalog arrays {missing}; write it with save_catalog"
                )
            kw: dict[str, Any] = {k: data[k] for k in _CATALOG_ARRAYS}
            kw.update({k: data[k].astype(object) for k in _CATALOG_TEXT})
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ReplayDataError(f"cannot read the catalog file {path}: {exc}") from exc
    return Catalog(**kw, meta=meta)
