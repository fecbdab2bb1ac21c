"""Load logged sessions (Parquet or CSV in the log schema) into `Sessions`, validated.

`load_sessions` reads one Parquet or CSV file, or a folder of them (Parquet part files first;
CSV files when the folder holds no Parquet), checks every value against the schema of
`recoworld.replay.schema.COLUMNS`, and returns a `Sessions` record of numpy arrays sorted by
``(recommender, user_id, session, step)``. Anything wrong raises `ReplayDataError` naming the
file, the row (0-based; CSV errors add the line number) and the column.

Required columns: ``user_id``, ``session``, ``day``, ``step``, ``slate_ids``, ``clicks``. The
others get defaults when absent (and are listed in ``Sessions.meta["defaulted"]``):
``recommender`` "logged"; ``candidate_ids`` the slate; ``propensity`` 1.0 per slot, with
``meta["propensity_known"] = False`` (off-policy estimators need real propensities);
``clicked`` the first clicked slot's item; ``watch_time``, ``watch_fraction`` 0; ``liked``,
``churned`` False; ``left`` True at each session's last logged step; ``return_days`` -1;
``reward`` the number of clicks; ``instruction`` ""; ``instruction_kind`` 0. The files of one
log must have the same columns. Columns outside the schema are ignored (listed in
``meta["extra_columns"]``).

In CSV files a list column holds one string per row, ``"[1, 2, 3]"`` or ``"1 2 3"``;
booleans are ``true``/``false`` (any case) or ``1``/``0``.

pyarrow is the ``data`` extra (pandas too, for `Sessions.to_frame`); both are imported inside
the functions that use them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.catalog import Catalog
from recoworld.errors import ReplayDataError, require
from recoworld.replay.log_columns import (  # REQUIRED is re-exported
    _CSV_SUFFIXES,
    _LISTS,
    _NUMPY,
    _PAD,
    _PARQUET_SUFFIXES,
    _STRINGS,
    _TYPES,
    METADATA_KEY,
    _element,
    _Part,
    _read_part,
    _Where,
)
from recoworld.replay.log_columns import (
    REQUIRED as REQUIRED,
)
from recoworld.replay.schema import pyarrow_schema


@dataclass(frozen=True, slots=True, eq=False)
class Sessions:
    """Logged steps as numpy arrays (read-only), sorted by (recommender, user, session, step).

    Ragged list columns are padded to the widest row: item ids with -1, propensities with NaN,
    clicks with False. A slate slot exists where its propensity is not NaN (`slate_mask`); a
    ``-1`` in an existing slot is a repeat shown once, as in the schema.

    Attributes:
        recommender: ``(n,)`` object str. user_id: ``(n,)`` int64.
        session, day, step: ``(n,)`` int32.
        candidate_ids: ``(n, K)`` int32, -1 padding.
        slate_ids: ``(n, L)`` int32. propensity: ``(n, L)`` float32. clicks: ``(n, L)`` bool.
        clicked, return_days: ``(n,)`` int32. watch_time, watch_fraction, reward: ``(n,)``
            float32. liked, left, churned: ``(n,)`` bool.
        instruction: ``(n,)`` object str. instruction_kind: ``(n,)`` int8.
        meta: ``sources`` (files read), ``propensity_known``, ``defaulted`` (columns that
            were absent), ``extra_columns`` (ignored), and whatever the file's metadata held
            (e.g. a converter's ``layout`` and ``item_ids``).
    """

    recommender: np.ndarray
    user_id: np.ndarray
    session: np.ndarray
    day: np.ndarray
    step: np.ndarray
    candidate_ids: np.ndarray
    slate_ids: np.ndarray
    propensity: np.ndarray
    clicks: np.ndarray
    clicked: np.ndarray
    watch_time: np.ndarray
    watch_fraction: np.ndarray
    liked: np.ndarray
    left: np.ndarray
    return_days: np.ndarray
    churned: np.ndarray
    reward: np.ndarray
    instruction: np.ndarray
    instruction_kind: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in _array_fields():
            getattr(self, f).flags.writeable = False

    # ----------------------------------------------------------------- shape
    @property
    def n_steps(self) -> int:
        """Number of logged steps (rows)."""
        return int(self.user_id.shape[0])

    @property
    def n_sessions(self) -> int:
        return int(self.session_bounds().shape[0] - 1)

    @property
    def propensity_known(self) -> bool:
        """False when the log carries no logging propensities (they read 1.0)."""
        return bool(self.meta.get("propensity_known", True))

    def session_bounds(self) -> np.ndarray:
        """``(n_sessions + 1,)`` int64 offsets: session i is rows ``b[i]:b[i + 1]``."""
        n = self.n_steps
        change = (
            (self.recommender[1:] != self.recommender[:-1])
            | (self.user_id[1:] != self.user_id[:-1])
            | (self.session[1:] != self.session[:-1])
        )
        return np.concatenate([[0], np.flatnonzero(change) + 1, [n] if n else []]).astype(np.int64)

    def slate_mask(self) -> np.ndarray:
        """``(n, L)`` bool: the slot exists in the logged row (not padding)."""
        return ~np.isnan(self.propensity)

    def take(self, rows: np.ndarray | slice) -> Sessions:
        """A new `Sessions` with rows ``rows`` (a slice, indices or a boolean mask; keep
        them sorted to keep the order)."""
        if isinstance(rows, slice):
            picked: dict[str, Any] = {f: getattr(self, f)[rows] for f in _array_fields()}
        else:
            idx = np.asarray(rows)
            idx = np.flatnonzero(idx) if idx.dtype == bool else idx
            picked = {f: np.take(getattr(self, f), idx, axis=0) for f in _array_fields()}
        return replace(self, **picked)

    # ------------------------------------------------------------ conversion
    def to_table(self) -> Any:
        """The log as a ``pyarrow.Table`` of the schema (padding dropped), ``meta`` as JSON
        schema metadata under ``b"recoworld"``."""
        pa: Any = require("pyarrow", "data")
        schema = pyarrow_schema()
        masks = {
            "candidate_ids": self.candidate_ids >= 0,
            "slate_ids": self.slate_mask(),
            "propensity": self.slate_mask(),
            "clicks": self.slate_mask(),
        }
        arrays = []
        for f in schema:
            values = getattr(self, f.name)
            if f.name in masks:
                arrays.append(_list_array(values, masks[f.name], f.type))
            else:
                arrays.append(pa.array(values, f.type))
        meta = {METADATA_KEY: json.dumps(_jsonable(self.meta)).encode()}
        return pa.Table.from_arrays(arrays, schema=schema.with_metadata(meta))

    def to_frame(self) -> Any:
        """A ``pandas.DataFrame`` like `read_trajectories` returns (list cells as arrays)."""
        require("pandas", "data")
        return self.to_table().to_pandas()

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the log as one Parquet file (atomically: a failed write leaves no file and
        never replaces an existing one). Returns the path."""
        pq: Any = require("pyarrow.parquet", "data")
        table = self.to_table()
        return _atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the log as CSV, list cells as ``"[1, 2, 3]"`` (atomically). Unknown
        propensities are left out, so reading the file back marks them unknown again."""
        pa: Any = require("pyarrow", "data")
        pc: Any = require("pyarrow.compute", "data")
        pacsv: Any = require("pyarrow.csv", "data")
        table = self.to_table()
        columns, names = [], []
        for name in table.column_names:
            col = table[name]
            if name == "propensity" and not self.propensity_known:
                continue
            if name in _LISTS:
                joined = pc.binary_join(pc.cast(col, pa.list_(pa.string())), ", ")
                col = pc.binary_join_element_wise("[", joined, "]", "")
            columns.append(col)
            names.append(name)
        out = pa.Table.from_arrays(columns, names=names)
        return _atomic_write(Path(path), lambda tmp: pacsv.write_csv(out, tmp))

    @classmethod
    def from_table(
        cls,
        table: Any,
        *,
        source: str = "<table>",
        n_items: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Sessions:
        """Validate a ``pyarrow.Table`` in the log schema (see `load_sessions` for the rules).

        Args:
            table: the table; its ``b"recoworld"`` schema metadata joins ``meta``.
            source: the name errors give for the table.
            n_items: item ids must lie in ``[0, n_items)`` (unchecked when None).
            meta: extra entries for `Sessions.meta`.
        """
        part = _read_part(table, source, csv=False, n_items=n_items)
        return _assemble([part], meta or {})


def _array_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Sessions) if f.name != "meta")


# --------------------------------------------------------------------------- loading
def load_sessions(
    path: str | os.PathLike[str],
    *,
    n_items: int | None = None,
    catalog: Catalog | None = None,
    recommender: str | None = None,
) -> Sessions:
    """Read and validate logged sessions.

    Args:
        path: a ``.parquet`` / ``.csv`` (optionally ``.gz``/``.bz2``/``.zst``) file, or a
            folder: its Parquet files (recursively, e.g. ``simulate``'s
            ``trajectories/<recommender>/part-*.parquet``), or its CSV files if it has none.
        n_items: item ids must lie in ``[0, n_items)``; unchecked when neither this nor
            ``catalog`` is given.
        catalog: the catalog the item ids index (gives ``n_items``).
        recommender: keep only this recommender's rows.

    Returns:
        `Sessions`, sorted by ``(recommender, user_id, session, step)``.

    Raises:
        ReplayDataError: no file; an unreadable, truncated or corrupt file; a missing or
            mistyped column; a missing value; negative ``day``, ``session``, ``step``,
            ``watch_time``; ``watch_fraction`` outside [0, 1]; an item id outside the
            catalog; a propensity outside (0, 1]; slate, propensity and clicks of unequal
            lengths; a click on a slot that showed nothing; ``clicked`` that is not the first
            clicked item; a step logged twice — naming the file, row and column.
    """
    if catalog is not None:
        if n_items is not None and n_items != catalog.n_items:
            raise ReplayDataError(
                f"n_items={n_items} disagrees with the catalog's {catalog.n_items} items; "
                "give one of them"
            )
        n_items = catalog.n_items
    parts = [_read_file(f, n_items) for f in _files(Path(path))]
    sessions = _assemble(parts, {})
    if recommender is not None:
        keep = np.flatnonzero(sessions.recommender == recommender)
        if keep.size == 0:
            names = sorted(set(sessions.recommender.tolist()))
            raise ReplayDataError(
                f"{path} has no rows of recommender {recommender!r}; it logs {names}"
            )
        sessions = sessions.take(keep)
    return sessions


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        visible = [p for p in sorted(path.rglob("*")) if p.is_file() and p.name[0] != "."]
        found = [p for p in visible if p.name.endswith(_PARQUET_SUFFIXES)]
        found = found or [p for p in visible if p.name.endswith(_CSV_SUFFIXES)]
        if not found:
            raise ReplayDataError(
                f"{path} holds no .parquet or .csv files; write a log with "
                "simulate(out_dir=...) or recoworld.replay.convert"
            )
        return found
    if not path.exists():
        raise ReplayDataError(f"{path} does not exist; give a log file or a folder of logs")
    if not path.name.endswith(_PARQUET_SUFFIXES + _CSV_SUFFIXES):
        raise ReplayDataError(
            f"{path}: unknown log format; name it .parquet or .csv (found {path.suffix!r})"
        )
    return [path]


def _read_file(path: Path, n_items: int | None) -> _Part:
    pa: Any = require("pyarrow", "data")
    is_csv = path.name.endswith(_CSV_SUFFIXES)
    try:
        if is_csv:
            pacsv: Any = require("pyarrow.csv", "data")
            types = {c: pa.string() for c in (*_LISTS, *_STRINGS)}
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
        else:
            pq: Any = require("pyarrow.parquet", "data")
            table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        kind = "CSV" if is_csv else "Parquet"
        raise ReplayDataError(
            f"{path}: cannot read it as {kind}; the file is truncated, corrupt or not "
            f"{kind} ({exc})"
        ) from exc
    return _read_part(table, str(path), csv=is_csv, n_items=n_items)


# --------------------------------------------------------------- all files together
_DEFAULT_STRING = {"recommender": "logged", "instruction": ""}


def _assemble(parts: Sequence[_Part], meta: dict[str, Any]) -> Sessions:
    """Concatenate the files, sort the rows, fill absent columns with their defaults."""
    absent = _common_columns(parts)
    strings = {name: _merge_strings(parts, name) for name in _STRINGS}
    keys = [strings["recommender"][0]] + [
        _concat([p.scalars[k] for p in parts]).astype(np.int64, copy=False)
        for k in ("user_id", "session", "step")
    ]
    order = _sort_order(keys)
    cols: dict[str, np.ndarray] = {}
    lengths: dict[str, np.ndarray] = {}
    for name in _TYPES:
        if name in _STRINGS:
            codes, names = strings[name]
            cols[name] = names[_permute(codes, order)]
        elif name in absent:
            continue
        elif name in _LISTS:
            padded, lengths[name] = _pad_lists(parts, name)
            cols[name] = _permute(padded, order)
        else:
            dtype = _NUMPY[_TYPES[name]]
            cols[name] = _permute(_concat([p.scalars[name] for p in parts]).astype(dtype), order)
    slots = np.arange(cols["slate_ids"].shape[1]) < _permute(lengths["slate_ids"], order)[:, None]
    for name in _TYPES:  # in schema order: what a default derives from is already there
        if name in absent and name not in _STRINGS:
            cols[name] = _default(name, cols, slots)
    _check_duplicates(cols, parts, order)
    merged = {k: v for p in parts[::-1] for k, v in p.meta.items()} | meta
    merged.update(
        sources=[p.source for p in parts],
        propensity_known="propensity" not in absent
        and all(p.meta.get("propensity_known", True) for p in parts)
        and bool(meta.get("propensity_known", True)),
        defaulted=sorted(absent),
        extra_columns=sorted({e for p in parts for e in p.extra}),
    )
    return Sessions(**cols, meta=merged)


def _common_columns(parts: Sequence[_Part]) -> set[str]:
    """The schema columns absent from every file; a column in some files only is an error."""
    absent = set(parts[0].defaulted)
    for p in parts[1:]:
        for name in absent.symmetric_difference(p.defaulted):
            has, lacks = (p, parts[0]) if name in absent else (parts[0], p)
            raise ReplayDataError(
                f"{lacks.source}: column {name!r} is missing, but {has.source} has it; "
                "give the files of one log the same columns"
            )
    return absent


def _default(name: str, cols: dict[str, np.ndarray], slots: np.ndarray) -> np.ndarray:
    """The default of absent column ``name`` (see the module docstring)."""
    n, slate, clicks = slots.shape[0], cols["slate_ids"], cols["clicks"]
    if name == "candidate_ids":
        return slate.copy()
    if name == "propensity":
        return np.where(slots, np.float32(1), np.float32(np.nan))
    if name == "clicked":
        first = slate[np.arange(n), clicks.argmax(1)]
        return np.where(clicks.any(1), first, -1).astype(np.int32)
    if name == "left":
        return _session_ends(cols)
    if name == "reward":
        return clicks.sum(1).astype(np.float32)
    if name == "return_days":
        return np.full(n, -1, np.int32)
    return np.zeros(n, _NUMPY[_TYPES[name]])  # watch time and fraction, liked, churned, kind


def _merge_strings(parts: Sequence[_Part], name: str) -> tuple[np.ndarray, np.ndarray]:
    """A string column of every file as ``(codes (n,) int32, sorted names)``."""
    local = [
        p.strings.get(name, (np.zeros(p.n, np.int32), np.array([_DEFAULT_STRING[name]])))
        for p in parts
    ]
    names = np.array(sorted({str(x) for _, nm in local for x in nm}), dtype=object)
    codes = [np.searchsorted(names, nm.astype(str).astype(object))[c] for c, nm in local]
    return _concat(codes).astype(np.int32, copy=False), names


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _permute(a: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    # np.take is several times faster than fancy indexing for wide rows
    return a if order is None else np.take(a, order, axis=0)


def _sort_order(keys: list[np.ndarray]) -> np.ndarray | None:
    """The permutation sorting rows by ``keys`` (most significant first); None if sorted."""
    if keys[0].shape[0] < 2 or (_compare_adjacent(keys) <= 0).all():
        return None
    return np.lexsort(keys[::-1]).astype(np.int64)


def _compare_adjacent(keys: list[np.ndarray]) -> np.ndarray:
    """``(n - 1,)`` int8: -1 / 0 / 1 where row i sorts before / equal / after row i + 1."""
    out = np.zeros(keys[0].shape[0] - 1, np.int8)
    for k in keys:
        c = np.sign(k[:-1].astype(np.int64) - k[1:].astype(np.int64)).astype(np.int8)
        np.copyto(out, c, where=out == 0)
    return out


def _pad_lists(parts: Sequence[_Part], name: str) -> tuple[np.ndarray, np.ndarray]:
    """A list column of every file as ``(padded (n, width), lengths (n,))`` in file order."""
    type_name = _element(_TYPES[name])
    dtype = _NUMPY[type_name]
    lengths = _concat([p.lists[name][0] for p in parts])
    flat = _concat([p.lists[name][1] for p in parts]).astype(dtype, copy=False)
    n, width = lengths.size, int(lengths.max()) if lengths.size else 1
    if n and (lengths == width).all():
        return flat.reshape(n, width), lengths
    padded = np.full((n, width), _PAD[type_name], dtype)
    padded[np.arange(width) < lengths[:, None]] = flat
    return padded, lengths


def _session_ends(cols: dict[str, np.ndarray]) -> np.ndarray:
    """True at each session's last logged row (rows sorted)."""
    n = cols["user_id"].shape[0]
    if n == 0:
        return np.zeros(0, bool)
    same = (
        (cols["recommender"][1:] == cols["recommender"][:-1])
        & (cols["user_id"][1:] == cols["user_id"][:-1])
        & (cols["session"][1:] == cols["session"][:-1])
    )
    return np.concatenate([~same, [True]])


def _check_duplicates(
    cols: dict[str, np.ndarray], parts: Sequence[_Part], order: np.ndarray | None
) -> None:
    if cols["user_id"].shape[0] < 2:
        return
    keys = [cols[k] for k in ("user_id", "session", "step")]
    same_rec = cols["recommender"][1:] == cols["recommender"][:-1]
    dup = np.flatnonzero(same_rec & (_compare_adjacent(keys) == 0))
    if dup.size == 0:
        return
    i = int(dup[0]) + 1
    original = int(order[i]) if order is not None else i
    starts = np.cumsum([0] + [p.n for p in parts])
    f = int(np.searchsorted(starts, original, side="right") - 1)
    _Where(parts[f].source, parts[f].source.endswith(_CSV_SUFFIXES)).fail(
        original - int(starts[f]),
        "step",
        f"user {cols['user_id'][i]} session {cols['session'][i]} step {cols['step'][i]} is "
        f"logged twice (recommender {cols['recommender'][i]!r}); drop the duplicate row",
    )


# --------------------------------------------------------------------------- writing
def _list_array(values: np.ndarray, mask: np.ndarray, arrow_type: Any) -> Any:
    pa: Any = require("pyarrow", "data")
    n, width = values.shape
    if mask.all():
        offsets = np.arange(n + 1, dtype=np.int32) * np.int32(width)
        flat = values.reshape(-1)
    else:
        offsets = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
        flat = values[mask]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, arrow_type.value_type))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` then move tmp over ``path``; on any failure the tmp file is removed and
    ``path`` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
