"""Speed of the logged-session tools on a 1,000,000-step log.

Sections (each a function, printed by `main`):

- loading (`bench_loading`): rows per second of `recoworld.replay.load_sessions` on a Parquet
  log written by `make_log`, against ``pyarrow.parquet.read_table`` of the same file measured in
  the same run (the floor any loader pays), and of the CSV round trip on a 100,000-row slice.

The log is synthetic, built in the log schema with pyarrow directly (seconds, not the minutes a
simulation of a million steps takes): 20,000 users, sessions of 1 .. 40 steps, K = 50 candidates,
slates of 5 with uniform-random propensities ``1 / (K - j)``, about 10% clicks.

    python benchmarks/replay.py                 # 1,000,000 rows
    python benchmarks/replay.py --rows 100000   # a quicker run
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recoworld.replay.loaders import load_sessions
from recoworld.replay.schema import pyarrow_schema

N_ROWS = 1_000_000
N_ITEMS, K, SLATE = 10_000, 50, 5
CSV_ROWS = 100_000
ROUNDS = 3  # timing rounds per measurement (best counts)


def best_of(fn: Callable[[], Any], rounds: int = ROUNDS) -> float:
    """Fastest wall-clock seconds of ``rounds`` calls of ``fn``."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _list_array(values: np.ndarray) -> pa.Array:
    n, width = values.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * np.int32(width))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(values).reshape(-1)))


def make_log(path: str | Path, n_rows: int = N_ROWS, seed: int = 0) -> Path:
    """Write a synthetic ``n_rows``-step log in the log schema to the Parquet file ``path``.

    Users have sessions of 1 .. 40 steps; rows are ordered by (day, step), as ``simulate``
    writes them, so the loader's sort is timed too. Slates, clicks and watch fractions are
    i.i.d. per row, so only the key columns need ordering. Returns the path.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 41, n_rows // 10 + 41)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n_rows) + 1]
    lengths[-1] -= lengths.sum() - n_rows
    n_sessions = lengths.size
    user = rng.integers(0, max(n_rows // 50, 1), n_sessions)
    # sessions of one user numbered 0, 1, ... in the order drawn
    by_user = np.argsort(user, kind="stable")
    session = np.empty(n_sessions, np.int32)
    session[by_user] = np.arange(n_sessions) - np.searchsorted(user[by_user], user[by_user])
    day = np.minimum(session, 13)
    sess_of_row = np.repeat(np.arange(n_sessions), lengths)
    step = (np.arange(n_rows) - np.repeat(np.cumsum(lengths) - lengths, lengths)).astype(np.int32)
    left = step == lengths[sess_of_row] - 1
    order = np.argsort(day[sess_of_row].astype(np.int64) * 1000 + step, kind="stable")
    take = lambda a: np.take(a, order)  # noqa: E731
    cand = rng.integers(0, N_ITEMS, (n_rows, K), dtype=np.int32)
    slate = cand[:, :SLATE]
    clicked_rows = rng.random(n_rows) < 0.1
    slot = rng.integers(0, SLATE, n_rows)
    clicks = (np.arange(SLATE) == slot[:, None]) & clicked_rows[:, None]
    watch_fraction = np.where(clicked_rows, rng.random(n_rows), 0).astype(np.float32)
    propensity = 1.0 / (K - np.arange(SLATE, dtype=np.float32))
    columns: dict[str, Any] = {
        "recommender": pa.array(np.full(n_rows, "random", object), pa.string()),
        "user_id": take(user[sess_of_row]),
        "session": take(session[sess_of_row]),
        "day": take(day[sess_of_row]),
        "step": take(step),
        "candidate_ids": _list_array(cand),
        "slate_ids": _list_array(slate),
        "propensity": _list_array(np.broadcast_to(propensity, (n_rows, SLATE))),
        "clicks": _list_array(clicks),
        "clicked": np.where(clicked_rows, slate[np.arange(n_rows), slot], -1),
        "watch_time": watch_fraction * 60,
        "watch_fraction": watch_fraction,
        "liked": clicked_rows & (rng.random(n_rows) < 0.1),
        "left": take(left),
        "return_days": take(np.where(left, 1, -1)),
        "churned": np.zeros(n_rows, bool),
        "reward": clicks.sum(1) + watch_fraction,
        "instruction": pa.array(np.full(n_rows, "", object), pa.string()),
        "instruction_kind": np.zeros(n_rows, np.int8),
    }
    schema = pyarrow_schema()
    arrays = [
        c if isinstance(c := columns[f.name], pa.Array) else pa.array(c, f.type) for f in schema
    ]
    path = Path(path)
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)
    return path


def bench_loading(path: str | Path, csv_rows: int = CSV_ROWS) -> dict[str, float]:
    """Time `load_sessions` on the Parquet log ``path`` and on a CSV of its first rows.

    Returns rows per second: ``parquet_read_table`` (pyarrow's read alone),
    ``load_sessions_parquet``, ``load_sessions_csv``, and ``rows``.
    """
    path = Path(path)
    rows = pq.ParquetFile(path).metadata.num_rows
    t_read = best_of(lambda: pq.read_table(path))
    t_load = best_of(lambda: load_sessions(path, n_items=N_ITEMS))
    sessions = load_sessions(path)
    small = sessions.take(slice(0, min(csv_rows, rows)))
    with tempfile.TemporaryDirectory() as tmp:
        csv = small.to_csv(Path(tmp) / "log.csv")
        t_csv = best_of(lambda: load_sessions(csv))
    out = {
        "rows": float(rows),
        "sessions": float(sessions.n_sessions),
        "parquet_read_table": rows / t_read,
        "load_sessions_parquet": rows / t_load,
        "load_sessions_csv": small.n_steps / t_csv,
    }
    print(f"log: {rows:,} rows, {sessions.n_sessions:,} sessions, K={K}, slates of {SLATE}")
    print(f"  pyarrow read_table (reference)   {out['parquet_read_table']:>14,.0f} rows/s")
    print(
        f"  load_sessions, Parquet           {out['load_sessions_parquet']:>14,.0f} rows/s"
        f"  ({t_load:.2f} s; {t_read / t_load:.2f} x the reference)"
    )
    print(
        f"  load_sessions, CSV ({small.n_steps:,} rows)  {out['load_sessions_csv']:>12,.0f} rows/s"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=N_ROWS, help="log size in steps")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = make_log(Path(tmp) / "log.parquet", args.rows)
        print(
            f"make_log: {args.rows:,} rows in {time.perf_counter() - t0:.1f} s, "
            f"{path.stat().st_size / 2**20:.0f} MiB"
        )
        print("\n== loading ==")
        bench_loading(path)


if __name__ == "__main__":
    main()
