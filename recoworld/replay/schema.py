"""The one log schema: one row per step, written by `simulate` and read by everything else.

`COLUMNS` is the schema, as a table of column name, type and meaning; `pyarrow_schema` turns it
into a `pyarrow.Schema` and `schema_table` renders it as Markdown for docs. Real logs in the same
schema go through the same readers.

`TrajectoryWriter` buffers steps as numpy column batches and writes one Parquet part file
(``part-0000.parquet``, ``part-0001.parquet`` ...) per `TrajectoryWriter.flush`. Each part is
written under a temporary name and moved into place with `os.replace`, so an interrupted run
leaves only complete, readable parts. `read_trajectories` reads them back into a DataFrame.

pyarrow and pandas are the ``data`` extra; they are imported inside the functions that use them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from recoworld.errors import ReplayDataError, require


@dataclass(frozen=True, slots=True)
class Column:
    """One log column.

    Attributes:
        name: column name.
        type: ``string``, ``bool``, ``int8``, ``int32``, ``int64``, ``float32`` or
            ``list<T>`` (one value per slate slot or candidate) of one of those.
        meaning: what the value is.
    """

    name: str
    type: str
    meaning: str


COLUMNS: tuple[Column, ...] = (
    Column("recommender", "string", "label of the recommender that chose the slate"),
    Column("user_id", "int64", "user id (the same user across recommenders in one run)"),
    Column("session", "int32", "the user's session index, from 0"),
    Column("day", "int32", "calendar day of the step, from 0"),
    Column("step", "int32", "step within the session, from 0"),
    Column("candidate_ids", "list<int32>", "(K,) item ids the recommender chose from"),
    Column("slate_ids", "list<int32>", "(L,) item ids shown, -1 for a repeat shown once"),
    Column(
        "propensity",
        "list<float32>",
        "(L,) probability of each shown item at its slot given the items shown above it, under "
        "the logging recommender (the product is the slate's probability; 1.0 for "
        "deterministic recommenders)",
    ),
    Column("clicks", "list<bool>", "(L,) True where the user clicked the slot (at most one)"),
    Column("clicked", "int32", "item id of the first clicked slot, -1 if none"),
    Column("watch_time", "float32", "seconds watched over the slate"),
    Column("watch_fraction", "float32", "share of the clicked item watched, 0 if no click"),
    Column("liked", "bool", "the user liked a shown item"),
    Column("left", "bool", "the user ended the session after this step"),
    Column(
        "return_days",
        "int32",
        "days until the user's next session; -1 unless the session ended and the user returns",
    ),
    Column("churned", "bool", "the user churned at this step (never returns)"),
    Column("reward", "float32", "the environment's reward for the step"),
    Column("instruction", "string", "the instruction the user said at this step, '' if none"),
    Column("instruction_kind", "int8", "`InstructionKind` of that instruction, 0 if none"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

OPTIONAL_COLUMNS: tuple[Column, ...] = (
    Column("rec_rationale", "string", "the recommender's short rationale for the slate"),
    Column(
        "rec_tool_calls",
        "string",
        "JSON list of the recommender's tool calls for the slate (name, arguments, result ids)",
    ),
    Column("rec_fallback", "bool", "the slate is a fallback ranking: the LLM call failed"),
    Column("rec_repaired", "bool", "invalid picks of the LLM were replaced (ids not candidates)"),
    Column(
        "followed",
        "list<bool>",
        "(L,) True where the click on the slot made the user follow the item's author "
        "(UserAuthor-v0 logs, `recoworld.agents.rliv_logs`)",
    ),
    Column(
        "gifted",
        "list<bool>",
        "(L,) True where the click on the slot brought a gift to the item's author "
        "(UserAuthor-v0 logs)",
    ),
)
"""Columns a log may add after `COLUMNS` (written by `simulate` for recommenders that explain
themselves, e.g. the LLM recommender's ``extras``); readers accept logs with or without them."""
OPTIONAL_NAMES: tuple[str, ...] = tuple(c.name for c in OPTIONAL_COLUMNS)
_OPTIONAL = {c.name: c for c in OPTIONAL_COLUMNS}
_DEFAULTS = {"string": "", "bool": False}
_LIST = re.compile(r"list<(\w+)>")
_NUMPY = {
    "bool": np.bool_,
    "int8": np.int8,
    "int32": np.int32,
    "int64": np.int64,
    "float32": np.float32,
}
PART_GLOB = "part-*.parquet"


def _default(column: Column, n: int, batch: Mapping[str, Any]) -> np.ndarray:
    """The fill of an optional column a later batch leaves out: "" / False per row, or per
    slot (as wide as the batch's ``clicks``) for a list column."""
    if _LIST.fullmatch(column.type):
        return np.zeros(np.shape(batch["clicks"]), _NUMPY[_element(column.type)])
    return np.full(n, _DEFAULTS[column.type])


def schema_table() -> str:
    """The schema as a Markdown table (column | type | meaning)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {c.meaning} |" for c in COLUMNS]
    return "\n".join(lines)


def _element(type_name: str) -> str:
    match = _LIST.fullmatch(type_name)
    return match.group(1) if match else type_name


def _arrow_type(type_name: str) -> Any:
    pa: Any = require("pyarrow", "data")
    base = {
        "string": pa.string(),
        "bool": pa.bool_(),
        "int8": pa.int8(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
    }
    element = base[_element(type_name)]
    return pa.list_(element) if _LIST.fullmatch(type_name) else element


def pyarrow_schema(optional: tuple[str, ...] = ()) -> Any:
    """The log schema as a ``pyarrow.Schema`` (requires the ``data`` extra), with the
    `OPTIONAL_COLUMNS` named in ``optional`` after the required ones."""
    pa: Any = require("pyarrow", "data")
    cols = COLUMNS + tuple(_OPTIONAL[name] for name in optional)
    return pa.schema([pa.field(c.name, _arrow_type(c.type)) for c in cols])


def _as_numpy(values: Any, column: Column, n: int) -> np.ndarray | str:
    """One batch of one column as a fresh numpy array of the column's type; for a string
    column, one str stays a str (shared by the n rows)."""
    if column.type == "string" and isinstance(values, str):
        return values
    is_list = _LIST.fullmatch(column.type) is not None
    dtype = object if column.type == "string" else _NUMPY[_element(column.type)]
    arr: np.ndarray = np.array(values, dtype=dtype)
    if arr.ndim != (2 if is_list else 1) or arr.shape[0] != n:
        want = "(n, width)" if is_list else "(n,)"
        raise ValueError(
            f"log column {column.name!r} ({column.type}) needs shape {want} with "
            f"n={n}, got {arr.shape}"
        )
    return arr


def _to_arrow(values: np.ndarray | str, column: Column, n: int) -> Any:
    """One buffered batch of one column as an Arrow array, without per-row Python loops.

    A ``list<T>`` column is built from its 2-D ``(n, width)`` array: the flat values plus the
    offsets ``0, width, 2 width, ...``.
    """
    pa: Any = require("pyarrow", "data")
    if isinstance(values, str):
        return pa.repeat(pa.scalar(values, pa.string()), n)
    if column.type == "string":
        return pa.array(values, pa.string())
    if values.ndim == 2:
        offsets = pa.array(np.arange(n + 1, dtype=np.int32) * np.int32(values.shape[1]))
        return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))
    return pa.array(values)


class TrajectoryWriter:
    """Buffers logged steps and writes them as Parquet part files in ``path_dir``.

    Usage::

        with TrajectoryWriter("runs/x/trajectories/random") as writer:
            writer.append({"recommender": "random", "user_id": ids, ...})  # one step, n users
            writer.flush()  # part-0000.parquet

    Leaving the ``with`` block normally flushes what is left; leaving it with an exception
    drops the unflushed rows, so only complete batches reach the disk.

    Args:
        path_dir: folder of the part files; created if missing. It must not hold part files
            yet (so two runs never mix in one log).
    """

    def __init__(self, path_dir: str | os.PathLike[str]) -> None:
        self.path = Path(path_dir)
        if self.path.is_dir() and any(self.path.glob(PART_GLOB)):
            raise ReplayDataError(
                f"{self.path} already holds {PART_GLOB} files from another "
                "run; write to a new folder"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.parts = 0
        self.rows_written = 0
        self.optional: tuple[str, ...] | None = None  # fixed by the first batch
        self._batches: list[tuple[int, Mapping[str, np.ndarray | str]]] = []

    @property
    def rows_buffered(self) -> int:
        return sum(n for n, _ in self._batches)

    def append(self, batch: Mapping[str, np.ndarray | str]) -> None:
        """Buffer one batch of rows.

        Args:
            batch: every column of `COLUMNS`: ``(n,)`` arrays for scalar columns, ``(n, width)``
                arrays for list columns, and for string columns an ``(n,)`` object array or one
                str shared by all n rows. Arrays are copied and cast to the column's type.
                `OPTIONAL_COLUMNS` may be added; the first batch fixes which ones the log has
                (later batches without them get "" / False).
        """
        missing = [c for c in COLUMN_NAMES if c not in batch]
        extra = [c for c in batch if c not in COLUMN_NAMES and c not in _OPTIONAL]
        if self.optional is None:
            self.optional = tuple(c for c in OPTIONAL_NAMES if c in batch)
        late = [c for c in batch if c in _OPTIONAL and c not in self.optional]
        if late:
            raise ValueError(
                f"optional log columns {late} appear after the first batch, which had "
                f"{list(self.optional)}; give them from the first batch on"
            )
        if missing or extra:
            raise ValueError(
                f"a log batch needs exactly the schema's columns; missing "
                f"{missing}, unknown {extra}"
            )
        n = int(np.shape(batch["user_id"])[0])
        if n:
            cols = COLUMNS + tuple(_OPTIONAL[name] for name in self.optional)
            filled = {
                name: _default(_OPTIONAL[name], n, batch)
                for name in self.optional
                if name not in batch
            }
            batch = {**filled, **batch}
            self._batches.append((n, {c.name: _as_numpy(batch[c.name], c, n) for c in cols}))

    def flush(self) -> Path | None:
        """Write the buffered rows as the next part file; returns its path (None if empty)."""
        if not self._batches:
            return None
        pa: Any = require("pyarrow", "data")
        pq: Any = require("pyarrow.parquet", "data")
        optional = self.optional or ()
        cols = COLUMNS + tuple(_OPTIONAL[name] for name in optional)
        chunks = {c.name: [_to_arrow(b[c.name], c, n) for n, b in self._batches] for c in cols}
        schema = pyarrow_schema(optional)
        table = pa.Table.from_arrays(
            [pa.chunked_array(chunks[f.name], f.type) for f in schema], schema=schema
        )
        final = self.path / f"part-{self.parts:04d}.parquet"
        tmp = self.path / f".{final.name}.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self.parts += 1
        self.rows_written += table.num_rows
        self._batches.clear()
        return final

    def discard(self) -> None:
        """Drop the buffered rows without writing them."""
        self._batches.clear()

    def close(self) -> None:
        """Flush what is left."""
        self.flush()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def trajectory_files(path_dir: str | os.PathLike[str]) -> list[Path]:
    """The part files under ``path_dir`` (searched recursively), in order."""
    return sorted(Path(path_dir).rglob(PART_GLOB))


def read_trajectories(path_dir: str | os.PathLike[str]) -> Any:
    """Read every part file under ``path_dir`` into one ``pandas.DataFrame``.

    ``path_dir`` may be one recommender's folder or the ``trajectories`` folder above several.
    List columns come back as numpy arrays per row. `OPTIONAL_COLUMNS` that any part has come
    after the required columns (null in the rows of parts without them).

    Raises:
        ReplayDataError: no part files, or a part that lacks columns or has the wrong types.
    """
    pa: Any = require("pyarrow", "data")
    pq: Any = require("pyarrow.parquet", "data")
    require("pandas", "data")
    files = trajectory_files(path_dir)
    if not files:
        raise ReplayDataError(
            f"no {PART_GLOB} files under {path_dir}; write a log with "
            "simulate(out_dir=...) or TrajectoryWriter"
        )
    tables = []
    for f in files:
        table = pq.read_table(f)
        missing = [c for c in COLUMN_NAMES if c not in table.column_names]
        if missing:
            raise ReplayDataError(
                f"{f} lacks the log columns {missing}; see recoworld.replay.schema.COLUMNS"
            )
        optional = tuple(c for c in OPTIONAL_NAMES if c in table.column_names)
        try:
            names = list(COLUMN_NAMES + optional)
            tables.append(table.select(names).cast(pyarrow_schema(optional)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ReplayDataError(f"{f} does not match the log schema: {exc}") from exc
    if len({tuple(t.column_names) for t in tables}) > 1:  # some parts lack optional columns
        return pa.concat_tables(tables, promote_options="default").to_pandas()
    return pa.concat_tables(tables).to_pandas()
