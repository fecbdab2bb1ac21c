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
from typing import Any, NoReturn

import numpy as np

from recoworld.catalog import Catalog
from recoworld.errors import ReplayDataError, require
from recoworld.replay.schema import COLUMNS, pyarrow_schema
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
