"""One log file's columns: reading them from an Arrow table (Parquet or CSV), casting to the
schema's numpy types, and checking every value; errors name the file, row and column."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from recoworld.errors import ReplayDataError, require
from recoworld.replay.schema import COLUMNS
from recoworld.types import N_INSTRUCTION_KINDS

REQUIRED: tuple[str, ...] = ("user_id", "session", "day", "step", "slate_ids", "clicks")
METADATA_KEY = b"recoworld"  # Parquet schema metadata: JSON of `Sessions.meta`
_TYPES: dict[str, str] = {c.name: c.type for c in COLUMNS}
_LISTS = tuple(c.name for c in COLUMNS if c.type.startswith("list<"))
_STRINGS = tuple(c.name for c in COLUMNS if c.type == "string")
_NUMPY: dict[str, Any] = {
    "bool": np.bool_,
    "int8": np.int8,
    "int32": np.int32,
    "int64": np.int64,
    "float32": np.float32,
}
_PAD: dict[str, Any] = {"int32": -1, "float32": np.nan, "bool": False}
_TRUE = frozenset({"true", "t", "1", "yes"})
_FALSE = frozenset({"false", "f", "0", "no"})
_EMPTY = "empty list; every step shows at least one item"
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
_PARQUET_SUFFIXES = (".parquet", ".pq")


# ----------------------------------------------------------------- one file's columns
@dataclass
class _Part:
    """One file's columns, typed: scalars ``(n,)``; lists as ``(lengths (n,), flat values)``."""

    source: str
    n: int
    scalars: dict[str, np.ndarray]
    lists: dict[str, tuple[np.ndarray, np.ndarray]]
    strings: dict[str, tuple[np.ndarray, np.ndarray]]  # (codes (n,), names) per string column
    meta: dict[str, Any]
    defaulted: list[str]
    extra: list[str]


class _Where:
    """Turns a row (or a list element) of one file into "file: row r (line l), column c"."""

    def __init__(self, source: str, csv: bool) -> None:
        self.source, self.csv = source, csv

    def fail(self, row: int, column: str, problem: str) -> NoReturn:
        line = f" (line {row + 2})" if self.csv else ""
        raise ReplayDataError(f"{self.source}: row {row}{line}, column {column!r}: {problem}")

    def column(self, column: str, problem: str) -> NoReturn:
        """A problem of the whole column (its type), not of one row."""
        raise ReplayDataError(f"{self.source}: column {column!r}: {problem}")

    def first(
        self,
        bad: np.ndarray,
        column: str,
        problem: str,
        values: np.ndarray | None = None,
        offsets: np.ndarray | None = None,
    ) -> None:
        """Fail at the first True of ``bad``: rows, or list elements when ``offsets`` (the
        ``(n + 1,)`` row offsets) is given. ``{v}`` in ``problem`` becomes the bad value."""
        idx = np.flatnonzero(bad)
        if idx.size == 0:
            return
        i = int(idx[0])
        text = problem.format(v=_show(values[i])) if values is not None else problem
        if offsets is None:
            self.fail(i, column, text)
        row = int(np.searchsorted(offsets, i, side="right") - 1)
        self.fail(row, f"{column}[{i - int(offsets[row])}]", text)


def _read_part(table: Any, source: str, *, csv: bool, n_items: int | None) -> _Part:
    where = _Where(source, csv)
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ReplayDataError(
            f"{source}: the required columns {missing} are missing (columns: "
            f"{table.column_names}); see recoworld.replay.schema.COLUMNS"
        )
    n = table.num_rows
    part = _Part(source, n, {}, {}, {}, {}, [], [])
    raw_meta = (table.schema.metadata or {}).get(METADATA_KEY)
    part.meta = json.loads(raw_meta) if raw_meta else {}
    part.extra = [c for c in table.column_names if c not in _TYPES]
    for name, type_name in _TYPES.items():
        if name not in table.column_names:
            part.defaulted.append(name)
            continue
        col = table[name].combine_chunks() if table[name].num_chunks != 1 else table[name].chunk(0)
        if name in _STRINGS:
            part.strings[name] = _strings(col)
        elif name in _LISTS:
            part.lists[name] = _list_column(col, name, _element(type_name), where)
        else:
            part.scalars[name] = _scalar_column(col, name, type_name, where)
    _check_values(part, where, n_items)
    return part


def _element(type_name: str) -> str:
    return type_name[5:-1] if type_name.startswith("list<") else type_name


def _strings(col: Any) -> tuple[np.ndarray, np.ndarray]:
    """A string column as ``(codes (n,) int32, names)``: no per-row Python objects."""
    pa: Any = require("pyarrow", "data")
    pc: Any = require("pyarrow.compute", "data")
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        col = pc.cast(col, pa.string())
    col = pc.fill_null(col, "")
    enc = pc.dictionary_encode(col)
    names = np.array(enc.dictionary.to_pylist() or [""], dtype=object)
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int32), names


def _scalar_column(col: Any, name: str, type_name: str, where: _Where) -> np.ndarray:
    pa: Any = require("pyarrow", "data")
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        where.column(name, f"holds lists ({col.type}); expected one {type_name} per row")
    if col.null_count:
        where.first(col.is_null().to_numpy(zero_copy_only=False), name, "missing value")
    return _cast(_to_numpy(col, type_name), type_name, name, where, None)


def _list_column(col: Any, name: str, element: str, where: _Where) -> tuple[np.ndarray, np.ndarray]:
    """A list column as ``(lengths (n,) int64, flat typed values)``; CSV-style strings are
    split on brackets, commas and spaces."""
    pa: Any = require("pyarrow", "data")
    pc: Any = require("pyarrow.compute", "data")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        for mark in "[],":  # literal replaces: several times faster than one regex
            col = pc.replace_substring(col, mark, " ")
        text = pc.utf8_trim_whitespace(col)
        empty = pc.fill_null(pc.equal(text, ""), False).to_numpy(zero_copy_only=False)
        where.first(empty, name, _EMPTY)
        col = pc.utf8_split_whitespace(text)
    elif pa.types.is_fixed_size_list(col.type):
        col = pc.cast(col, pa.list_(col.type.value_type))
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        where.column(name, f"holds {col.type}; expected a list of {element} per row")
    if col.null_count:
        where.first(col.is_null().to_numpy(zero_copy_only=False), name, "missing value")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    where.first(lengths == 0, name, _EMPTY)
    flat = pc.list_flatten(col)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if flat.null_count:
        nulls = flat.is_null().to_numpy(zero_copy_only=False)
        where.first(nulls, name, "missing value", offsets=offsets)
    values = _cast(_to_numpy(flat, element), element, name, where, offsets)
    return lengths, values


def _to_numpy(col: Any, type_name: str) -> np.ndarray:
    """A column's values as numpy; strings are parsed by Arrow when they all parse (fast), else
    left as strings for `_cast` to find the bad one."""
    pa: Any = require("pyarrow", "data")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        parsed = {"bool": pa.bool_(), "float32": pa.float64()}.get(type_name, pa.int64())
        try:
            col = col.cast(parsed)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return col.to_numpy(zero_copy_only=False)


def _cast(
    values: np.ndarray, type_name: str, name: str, where: _Where, offsets: np.ndarray | None
) -> np.ndarray:
    """``values`` as the numpy type of ``type_name``, or fail at the first value that is not
    one (``offsets`` maps list elements to rows)."""
    target = _NUMPY[type_name]
    kind = values.dtype.kind

    def bad(mask: np.ndarray) -> None:
        where.first(mask, name, f"{{v}} is not a valid {type_name}; fix the value", values, offsets)

    if kind in "OUS":  # strings (CSV, or a mistyped Parquet column)
        text = values.astype(str)
        if target is np.bool_:
            low = np.char.lower(np.char.strip(text))
            bad(~np.isin(low, list(_TRUE | _FALSE)))
            return np.isin(low, list(_TRUE))
        try:
            numbers = text.astype(np.float64)
        except ValueError:
            bad(np.array([not _is_number(x) for x in text]))
            raise
        return _cast(numbers, type_name, name, where, offsets)
    if kind == "b":
        if target is not np.bool_:
            bad(np.ones(values.shape, bool))
        return values
    if target is np.bool_:
        bad(~np.isin(values, (0, 1)))
        return values.astype(bool)
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        if kind == "f":
            bad(~np.isfinite(values) | (values != np.round(values)))
        if values.size and (values.min() < info.min or values.max() > info.max):
            bad((values < info.min) | (values > info.max))
        return values.astype(target, copy=False)
    return values.astype(target, copy=False)


def _show(x: Any) -> str:
    """A value for a message: strings quoted, floats at their own precision."""
    if isinstance(x, (str, np.str_)):
        return repr(str(x))
    if isinstance(x, np.floating):
        return str(x)
    return str(x.item() if isinstance(x, np.generic) else x)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _check_values(part: _Part, where: _Where, n_items: int | None) -> None:
    """The schema's value rules, on one file's typed columns."""
    s = part.scalars
    for name in ("session", "day", "step", "watch_time"):
        if name in s:
            where.first(s[name] < 0, name, "{v} is negative", s[name])
    for name in ("watch_time", "watch_fraction", "reward"):
        if name in s:
            where.first(~np.isfinite(s[name]), name, "NaN or infinite value")
    if "watch_fraction" in s:
        w = s["watch_fraction"]
        where.first((w < 0) | (w > 1), "watch_fraction", "{v} is outside [0, 1]", w)
    if "return_days" in s:
        r = s["return_days"]
        where.first(r < -1, "return_days", "{v} is below -1 (no return)", r)
    if "instruction_kind" in s:
        k = s["instruction_kind"]
        where.first(
            (k < 0) | (k > N_INSTRUCTION_KINDS),
            "instruction_kind",
            f"{{v}} is not an InstructionKind (0 .. {N_INSTRUCTION_KINDS})",
            k,
        )
    lengths = {name: lv[0] for name, lv in part.lists.items()}
    offsets = {name: np.concatenate([[0], np.cumsum(n)]) for name, n in lengths.items()}
    top = f"[0, {n_items})" if n_items is not None else "[0, n_items)"
    for name, low in (("candidate_ids", 0), ("slate_ids", -1)):
        if name in part.lists:
            ids = part.lists[name][1]
            out = (ids < low) | (ids >= n_items if n_items is not None else False)
            what = "an item id in " + top + (" or -1 (a repeat)" if low < 0 else "")
            where.first(out, name, "{v} is not " + what, ids, offsets[name])
    if "clicked" in s:
        c = s["clicked"]
        out = (c < -1) | (c >= n_items if n_items is not None else False)
        where.first(out, "clicked", f"{{v}} is not an item id in {top} or -1", c)
    if "propensity" in part.lists:
        p = part.lists["propensity"][1]
        where.first(
            ~((p > 0) & (p <= 1)),
            "propensity",
            "{v} is outside (0, 1]; give each shown item's logging probability, or leave the "
            "column out if unknown",
            p,
            offsets["propensity"],
        )
    for name in ("propensity", "clicks"):
        if name in lengths:
            m, want = lengths[name], lengths["slate_ids"]
            bad = np.flatnonzero(m != want)
            if bad.size:
                i = int(bad[0])
                where.fail(i, name, f"{m[i]} values for a slate of {want[i]} items; one per slot")
    slate, clicks = part.lists["slate_ids"][1], part.lists["clicks"][1]
    where.first(
        clicks & (slate < 0),
        "clicks",
        "a click on a slot that showed nothing (slate id -1)",
        offsets=offsets["clicks"],
    )
    if "clicked" in s:
        first = _first_clicked(lengths["slate_ids"], slate, clicks)
        c = s["clicked"]
        bad = np.flatnonzero(c != first)
        if bad.size:
            i = int(bad[0])
            where.fail(
                i,
                "clicked",
                f"{c[i]} is not the first clicked slot's item ({first[i]}, -1 if none)",
            )


def _first_clicked(lengths: np.ndarray, slate: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """``(n,)`` item id of each row's first clicked slot, -1 if none (flat list inputs, every
    row at least one slot)."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos = np.where(clicks, np.arange(clicks.size), clicks.size)
    first = np.minimum.reduceat(pos, starts) if lengths.size else np.zeros(0, np.int64)
    hit = first < starts + lengths
    return np.where(hit, slate[np.minimum(first, max(clicks.size - 1, 0))], -1)
