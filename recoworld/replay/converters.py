"""Converters from public interaction-log layouts to the log schema.

Supported layouts (`LAYOUTS`):

- ``"recbole"``: RecBole atomic ``.inter`` files, tab-separated with typed headers
  (``user_id:token  item_id:token  rating:float  timestamp:float``, optionally ``label:float``).
- ``"movielens"``: MovieLens ratings: ``ratings.csv`` (``userId,movieId,rating,timestamp``),
  the ``::``-separated ``ratings.dat`` of ML-1M/10M, or the tab-separated ``u.data`` of ML-100K.
- ``"kuairand"`` / ``"kuairec"``: KuaiRand/KuaiRec-style CSV logs (``user_id``, ``video_id``,
  a time in ``time_ms`` (ms) or ``timestamp`` (s), and optionally ``is_click``,
  ``play_time_ms``/``play_duration`` (ms), ``duration_ms``/``video_duration`` (ms),
  ``watch_ratio``, ``is_like``).

Every layout is read into `Interactions` (one row per logged item) and mapped the same way by
`to_sessions`:

- a user's events, in time order, split into sessions at gaps longer than
  ``session_gap_minutes`` (30); ``session`` counts a user's sessions from 0, ``step`` the events
  in a session from 0; ``day`` is the UTC calendar day, 0 = the log's first day;
- item ids are re-indexed to ``0 .. n_items - 1`` in sorted order of the original ids (the
  original id of item ``i`` is ``item_ids[i]``); integer user ids are kept, others re-indexed;
- each event is a slate of one: ``slate_ids = candidate_ids = [item]``. The logging policy is
  unknown, so ``propensity`` reads 1.0 and the metadata says ``propensity_known: false``:
  off-policy estimators need real propensities and refuse such logs;
- ``clicks``: ``is_click`` or ``label`` where the layout has one, else ``rating >=
  rating_threshold`` (4.0), else KuaiRec's ``watch_ratio >= watch_ratio_threshold`` (2.0), else
  every event (implicit feedback logs only hold positives);
- ``watch_time`` (s) and ``watch_fraction`` (play time / duration, clipped to [0, 1], or
  ``watch_ratio``) where the layout has them, and only on clicks;
- ``left`` at each session's last event; ``return_days`` the days until the user's next
  session (-1 after the last); ``churned`` False; ``liked`` from ``is_like``;
- ``reward`` = click + watch time in units of the median item duration (where durations exist).

`convert` writes the result as one Parquet file in the log schema, atomically: a failed run
never creates or replaces the output file. pandas and pyarrow are the ``data`` extra.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.errors import ConfigError, ReplayDataError, require
from recoworld.replay.loaders import Sessions
from recoworld.replay.schema import pyarrow_schema

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True, eq=False)
class Interactions:
    """Logged events of one layout, one row per event, in file order.

    Attributes:
        user, item: ``(n,)`` original ids (any dtype).
        time: ``(n,)`` float64 seconds since the epoch.
        click: ``(n,)`` bool.
        watch_time: ``(n,)`` float64 seconds watched, or None.
        watch_fraction: ``(n,)`` float64 share of the item watched in [0, 1], or None.
        duration: ``(n,)`` float64 seconds of the item, or None.
        liked: ``(n,)`` bool, or None.
        source: the file read (for errors and metadata).
    """

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    click: np.ndarray
    watch_time: np.ndarray | None = None
    watch_fraction: np.ndarray | None = None
    duration: np.ndarray | None = None
    liked: np.ndarray | None = None
    source: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class ConversionResult:
    """What `convert` wrote.

    Attributes:
        path: the Parquet file.
        sessions: the converted log.
        item_ids: ``(n_items,)`` original id of each new item id.
        user_ids: ``(n_users,)`` original id of each new user id, or None when the original
            integer user ids were kept.
    """

    path: Path | None
    sessions: Sessions
    item_ids: np.ndarray
    user_ids: np.ndarray | None


# ---------------------------------------------------------------------------- readers
class _Table:
    """A pandas table of strings read from ``path``, with errors naming file, row and column."""

    def __init__(self, frame: Any, path: Path, header_lines: int) -> None:
        self.frame, self.path, self.header_lines = frame, path, header_lines

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def need(self, *columns: str) -> None:
        missing = [c for c in columns if not self.has(c)]
        if missing:
            raise ReplayDataError(
                f"{self.path}: the columns {missing} are missing (columns: "
                f"{list(self.frame.columns)})"
            )

    def numbers(self, column: str, scale: float = 1.0) -> np.ndarray:
        """Column ``column`` as float64 times ``scale``; fails at the first non-number."""
        pd: Any = require("pandas", "data")
        raw = self.frame[column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            row = int(bad[0])
            raise ReplayDataError(
                f"{self.path}: row {row} (line {row + 1 + self.header_lines}), column "
                f"{column!r}: {raw.iloc[row]!r} is not a number; fix or drop the row"
            )
        return values * scale

    def ids(self, column: str) -> np.ndarray:
        """Ids as int64 when every value is an integer, else as strings."""
        raw = self.frame[column].to_numpy(object).astype(str)
        try:
            return raw.astype(np.int64)
        except ValueError:
            empty = np.flatnonzero(raw == "")
            if empty.size:
                row = int(empty[0])
                raise ReplayDataError(
                    f"{self.path}: row {row} (line {row + 1 + self.header_lines}), column "
                    f"{column!r}: missing id; fix or drop the row"
                ) from None
            return raw


def _read_text(path: Path, **kwargs: Any) -> Any:
    pd: Any = require("pandas", "data")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ReplayDataError(f"{path}: cannot read it ({exc})") from exc


def read_recbole(path: Path, *, rating_threshold: float = 4.0, **_: float) -> Interactions:
    """A RecBole atomic ``.inter`` file (tab-separated, headers ``name:type``)."""
    frame = _read_text(path, sep="\t")
    frame.columns = [str(c).split(":", 1)[0] for c in frame.columns]
    t = _Table(frame, path, 1)
    t.need("user_id", "item_id", "timestamp")
    if t.has("label"):
        click = t.numbers("label") > 0
    elif t.has("rating"):
        click = t.numbers("rating") >= rating_threshold
    else:
        click = np.ones(len(frame), bool)
    return Interactions(
        t.ids("user_id"), t.ids("item_id"), t.numbers("timestamp"), click, source=str(path)
    )


def read_movielens(path: Path, *, rating_threshold: float = 4.0, **_: float) -> Interactions:
    """MovieLens ratings: ``ratings.csv`` (header), ``ratings.dat`` (``::``) or ``u.data``
    (tab-separated), each ``user, movie, rating, timestamp``."""
    pd: Any = require("pandas", "data")
    names = ["userId", "movieId", "rating", "timestamp"]
    with open(path, encoding="latin-1") as f:
        first = f.readline()
    if "::" in first:
        # read as text and re-split, so the fast C parser handles the two-character separator
        text = Path(path).read_text(encoding="latin-1").replace("::", "\t")
        try:
            frame = pd.read_csv(
                io.StringIO(text),
                sep="\t",
                header=None,
                names=names,
                dtype=str,
                keep_default_na=False,
            )
        except (ValueError, pd.errors.ParserError) as exc:
            raise ReplayDataError(f"{path}: cannot read it ({exc})") from exc
        header_lines = 0
    elif "," in first:
        frame, header_lines = _read_text(path), 1
    else:
        frame, header_lines = _read_text(path, sep="\t", header=None, names=names), 0
    t = _Table(frame, path, header_lines)
    t.need(*names)
    click = t.numbers("rating") >= rating_threshold
    return Interactions(
        t.ids("userId"), t.ids("movieId"), t.numbers("timestamp"), click, source=str(path)
    )


def read_kuairand(path: Path, *, watch_ratio_threshold: float = 2.0, **_: float) -> Interactions:
    """A KuaiRand or KuaiRec interaction CSV (see the module docstring for its columns)."""
    t = _Table(_read_text(path), path, 1)
    t.need("user_id", "video_id")
    if t.has("time_ms"):
        time = t.numbers("time_ms", 1e-3)
    elif t.has("timestamp"):
        time = t.numbers("timestamp")
    else:
        raise ReplayDataError(
            f"{path}: no time column; give 'time_ms' (milliseconds) or 'timestamp' (seconds)"
        )
    play = _first_of(t, ("play_time_ms", "play_duration"), 1e-3)
    duration = _first_of(t, ("duration_ms", "video_duration"), 1e-3)
    ratio = t.numbers("watch_ratio") if t.has("watch_ratio") else None
    if t.has("is_click"):
        click = t.numbers("is_click") > 0
    elif ratio is not None:
        click = ratio >= watch_ratio_threshold
    else:
        click = np.ones(len(t.frame), bool)
    fraction = None
    if ratio is not None:
        fraction = ratio
    elif play is not None and duration is not None:
        fraction = np.divide(play, duration, out=np.zeros_like(play), where=duration > 0)
    if play is None and fraction is not None and duration is not None:
        play = fraction * duration
    return Interactions(
        t.ids("user_id"),
        t.ids("video_id"),
        time,
        click,
        watch_time=play,
        watch_fraction=None if fraction is None else np.clip(fraction, 0.0, 1.0),
        duration=duration,
        liked=t.numbers("is_like") > 0 if t.has("is_like") else None,
        source=str(path),
    )


def _first_of(t: _Table, columns: tuple[str, ...], scale: float) -> np.ndarray | None:
    for c in columns:
        if t.has(c):
            return t.numbers(c, scale)
    return None


Reader = Callable[..., Interactions]
LAYOUTS: dict[str, Reader] = {
    "recbole": read_recbole,
    "movielens": read_movielens,
    "kuairand": read_kuairand,
    "kuairec": read_kuairand,
}


# ------------------------------------------------------------------------- mapping
def to_sessions(
    events: Interactions, *, session_gap_minutes: float = 30.0, layout: str = ""
) -> tuple[Sessions, np.ndarray, np.ndarray | None]:
    """Map events to the log schema (rules in the module docstring).

    Returns:
        ``(sessions, item_ids, user_ids)``: the validated log, the original id of each new
        item id, and of each new user id (None when integer user ids were kept).
    """
    if not session_gap_minutes > 0:
        raise ConfigError(f"session_gap_minutes={session_gap_minutes} must be > 0")
    pa: Any = require("pyarrow", "data")
    n = events.time.shape[0]
    if n == 0:
        raise ReplayDataError(f"{events.source}: no events to convert")
    item_ids, item = np.unique(events.item, return_inverse=True)
    user_ids: np.ndarray | None = None
    if events.user.dtype.kind in "iu":
        user = events.user.astype(np.int64)
    else:
        user_ids, user = np.unique(events.user, return_inverse=True)
    order = np.lexsort((np.arange(n), events.time, user))
    user, item, time = user[order], item[order].astype(np.int32), events.time[order]
    new_user = np.concatenate([[True], user[1:] != user[:-1]])
    gap = np.concatenate([[np.inf], np.diff(time)])
    new_session = new_user | (gap > session_gap_minutes * 60.0)
    rows = np.arange(n)
    global_session = np.cumsum(new_session) - 1
    session = global_session - np.maximum.accumulate(np.where(new_user, global_session, 0))
    step = rows - np.maximum.accumulate(np.where(new_session, rows, 0))
    day = (np.floor(time / DAY_S) - np.floor(time.min() / DAY_S)).astype(np.int32)
    left = np.concatenate([new_session[1:], [True]])
    return_days = np.full(n, -1, np.int32)
    ends = np.flatnonzero(left[:-1] & ~new_user[1:])  # sessions followed by the same user's
    return_days[ends] = day[ends + 1] - day[ends]
    click = events.click[order]

    def clicked_only(x: np.ndarray | None) -> np.ndarray:
        return np.zeros(n, np.float32) if x is None else np.where(click, x[order], 0.0)

    watch_time = clicked_only(events.watch_time).astype(np.float32)
    watch_fraction = clicked_only(events.watch_fraction).astype(np.float32)
    reward = click.astype(np.float32)
    if events.duration is not None and events.watch_time is not None:
        positive = events.duration[events.duration > 0]
        median = float(np.median(positive)) if positive.size else 1.0
        reward = reward + watch_time / np.float32(median)
    one = np.ones((n, 1), np.float32)
    columns: dict[str, Any] = {
        "recommender": np.full(n, "logged", object),
        "user_id": user,
        "session": session,
        "day": day,
        "step": step,
        "candidate_ids": item[:, None],
        "slate_ids": item[:, None],
        "propensity": one,
        "clicks": click[:, None],
        "clicked": np.where(click, item, -1),
        "watch_time": watch_time,
        "watch_fraction": watch_fraction,
        "liked": np.zeros(n, bool) if events.liked is None else events.liked[order] & click,
        "left": left,
        "return_days": return_days,
        "churned": np.zeros(n, bool),
        "reward": reward,
        "instruction": np.full(n, "", object),
        "instruction_kind": np.zeros(n, np.int8),
    }
    schema = pyarrow_schema()
    table = pa.Table.from_arrays([_arrow(columns[f.name], f.type) for f in schema], schema=schema)
    meta = {
        "layout": layout,
        "source": events.source,
        "session_gap_minutes": session_gap_minutes,
        "propensity_known": False,
        "note": "converted from a public log: the logging policy is unknown (propensity 1.0); "
        "off-policy estimators need logging propensities",
        "item_ids": item_ids.tolist(),
    }
    if user_ids is not None:
        meta["user_ids"] = user_ids.tolist()
    sessions = Sessions.from_table(
        table, source=events.source, n_items=int(item_ids.size), meta=meta
    )
    return sessions, item_ids, user_ids


def _arrow(values: np.ndarray, arrow_type: Any) -> Any:
    pa: Any = require("pyarrow", "data")
    if values.ndim == 2:
        n, width = values.shape
        offsets = pa.array(np.arange(n + 1, dtype=np.int32) * np.int32(width))
        flat = pa.array(np.ascontiguousarray(values).reshape(-1), arrow_type.value_type)
        return pa.ListArray.from_arrays(offsets, flat)
    return pa.array(values, arrow_type)


def convert(
    path: str | os.PathLike[str],
    layout: str,
    out_path: str | os.PathLike[str] | None,
    *,
    session_gap_minutes: float = 30.0,
    rating_threshold: float = 4.0,
    watch_ratio_threshold: float = 2.0,
) -> ConversionResult:
    """Convert a public log to the log schema and write it as Parquet.

    Args:
        path: the input file.
        layout: a key of `LAYOUTS` (``"recbole"``, ``"movielens"``, ``"kuairand"``,
            ``"kuairec"``).
        out_path: the Parquet file to write (written to a temporary file, then moved into
            place, so a failed run leaves any existing file untouched); None writes nothing.
        session_gap_minutes: inactivity that starts a new session.
        rating_threshold: ratings at or above it are clicks (RecBole, MovieLens).
        watch_ratio_threshold: ``watch_ratio`` at or above it is a click (KuaiRec, which has
            no ``is_click``).

    Returns:
        A `ConversionResult` with the log and the id mappings.

    Raises:
        ConfigError: an unknown layout.
        ReplayDataError: an unreadable file, a missing column, or a value that is not a
            number, naming the file, row and column.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    src = Path(path)
    if not src.is_file():
        raise ReplayDataError(f"{src} does not exist or is not a file")
    events = LAYOUTS[layout](
        src, rating_threshold=rating_threshold, watch_ratio_threshold=watch_ratio_threshold
    )
    sessions, item_ids, user_ids = to_sessions(
        events, session_gap_minutes=session_gap_minutes, layout=layout
    )
    out = sessions.to_parquet(out_path) if out_path is not None else None
    return ConversionResult(out, sessions, item_ids, user_ids)
