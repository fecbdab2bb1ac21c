"""Speed of the logged-session tools on a 1,000,000-step log.

Sections (each a function, printed by `main`):

- loading (`bench_loading`): rows per second of `recoworld.replay.load_sessions` on a Parquet
  log written by `make_log`, against ``pyarrow.parquet.read_table`` of the same file measured in
  the same run (the floor any loader pays), and of the CSV round trip on a 100,000-row slice.
- off-policy evaluation (`bench_ope`): rows per second of the estimators on the log's arrays
  (single-item ones on slot 0, slate ones on the whole slate), of the Plackett-Luce target
  probabilities they need, of a 200-replicate bootstrap, and of `evaluate_log` end to end;
  the reference is a plain ``numpy`` mean over the same rows, timed in the same run.
- calibration (`bench_calibration`): seconds of `recoworld.replay.calibration.calibrate` on
  the log (its clicks are random, so only the time means anything here).

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


def bench_ope(path: str | Path, seed: int = 0) -> dict[str, float]:
    """Time the off-policy estimators on the log ``path``; returns rows per second by name."""
    from recoworld.catalog import Catalog
    from recoworld.replay import ope
    from recoworld.replay.validation import SoftmaxPolicy, evaluate_log, slate_indices

    s = load_sessions(path)
    n = s.n_steps
    rng = np.random.default_rng(seed)
    catalog = Catalog.synthetic(N_ITEMS, n_topics=20, dim=16, n_creators=200, seed=seed)
    target = SoftmaxPolicy(catalog, "popularity", temperature=1.0, slate_size=SLATE)
    cand = s.candidate_ids.astype(np.int64)
    action = slate_indices(cand, s.slate_ids.astype(np.int64))
    rewards = s.clicks.astype(np.float64)
    p0 = s.propensity.astype(np.float64)
    out: dict[str, float] = {"rows": float(n)}
    t = {}
    pi = target.probabilities(None, {"candidate_ids": cand})
    r0, p00, pe0 = rewards[:, 0], p0[:, 0], np.take_along_axis(pi, action[:, :1], 1)[:, 0]
    # the reference: the IPS formula in bare numpy, no checks (slot 0)
    t["numpy mean (reference)"] = best_of(lambda: (pe0 / p00 * r0).mean())
    t["target probabilities (n, K)"] = best_of(
        lambda: target.probabilities(None, {"candidate_ids": cand}), 1
    )
    cond = ope.plackett_luce_conditionals(pi, action)
    t["Plackett-Luce conditionals"] = best_of(lambda: ope.plackett_luce_conditionals(pi, action))
    sub = slice(0, min(n, 100_000))  # the sampled marginals are the slow part: time 100k rows
    t_marg = best_of(lambda: ope.plackett_luce_marginals(pi[sub], action[sub], rng), 1)
    q, mass = ope.plackett_luce_marginals(pi, action, rng)
    single = {"IPS": ope.IPS(), "ClippedIPS": ope.ClippedIPS(10.0), "SNIPS": ope.SNIPS()}
    for name, est in single.items():
        t[name] = best_of(lambda est=est: est.estimate(r0, p00, pe0))
    ids0 = cand[np.arange(n), action[:, 0]]
    predict = ope.ItemMeanReward().fit(ids0, r0)
    preds = predict(cand)
    t["DR (+ reward model)"] = best_of(
        lambda: ope.DoublyRobust().estimate(
            r0,
            p00,
            pe0,
            target_probabilities=pi,
            action=action[:, 0],
            reward_predictions=predict(cand),
        )
    )
    del preds
    marg0 = np.full(p0.shape, 1.0 / K)
    t["IIPS"] = best_of(lambda: ope.IndependentIPS().estimate(rewards, marg0, q))
    t["RIPS"] = best_of(lambda: ope.RewardInteractionIPS().estimate(rewards, p0, cond))
    t["SlateIPS"] = best_of(lambda: ope.SlateIPS().estimate(rewards, p0, cond))
    t["PI"] = best_of(
        lambda: ope.PseudoInverse().estimate(rewards, marg0, q, target_item_mass=mass)
    )
    t["IPS + 200 bootstrap replicates"] = best_of(
        lambda: ope.IPS().estimate_ci(r0, p00, pe0, n_bootstrap=200), 1
    )
    t_end = best_of(lambda: evaluate_log(s, {"softmax": target}, n_bootstrap=200), 1)
    print(f"log: {n:,} rows, K={K}, slates of {SLATE}; target: softmax over log-popularity")
    print("  (single-item estimators on slot 0; reference: mean(pe / p0 * r) in bare numpy)")
    for name, sec in t.items():
        out[name] = n / sec
        print(f"  {name:<32}{n / sec:>16,.0f} rows/s  ({sec:.3f} s)")
    m = sub.stop - sub.start
    out["Plackett-Luce marginals (sampled)"] = m / t_marg
    print(
        f"  {'Plackett-Luce marginals (L=5)':<32}{m / t_marg:>16,.0f} rows/s  "
        f"({t_marg:.3f} s for {m:,} rows; 32 sampled prefixes per row)"
    )
    out["evaluate_log end to end"] = n / t_end
    print(
        f"  {'evaluate_log, 4 slate estimators':<32}{n / t_end:>16,.0f} rows/s  ({t_end:.1f} s, "
        "incl. marginals and bootstraps)"
    )
    ratio = t["IPS"] / t["numpy mean (reference)"]
    print(f"  IPS takes {ratio:.1f} x the bare-numpy reference (its input checks)")
    return out


def bench_calibration(path: str | Path, prior_draws: int = 64) -> dict[str, float]:
    """Time `calibrate` on the log ``path`` (stage by stage); returns seconds by stage."""
    from recoworld.replay.calibration import LogArrays, calibrate

    t0 = time.perf_counter()
    arr = LogArrays.from_log(path, n_items=N_ITEMS)
    t_read = time.perf_counter() - t0
    stamps: list[tuple[str, float]] = []
    t1 = time.perf_counter()
    calibrate(
        arr,
        n_prior_draws=prior_draws,
        progress=lambda done, total, label: stamps.append((label, time.perf_counter())),
    )
    total = time.perf_counter() - t1
    out = {"read_and_sort": t_read, "calibrate": total}
    print(f"log: {arr.n:,} rows, {arr.n_users:,} users, {arr.n_items:,} items; M={prior_draws}")
    print(f"  load + sort into LogArrays        {t_read:8.1f} s")
    last = t1
    for label, stamp in stamps:
        print(f"  {label:<34}{stamp - last:8.1f} s")
        out[label] = stamp - last
        last = stamp
    print(f"  calibrate, total                  {total:8.1f} s  ({arr.n / total:,.0f} rows/s)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=N_ROWS, help="log size in steps")
    parser.add_argument("--skip-ope", action="store_true", help="skip the OPE section")
    parser.add_argument(
        "--skip-calibration", action="store_true", help="skip the calibration section"
    )
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
        if not args.skip_ope:
            print("\n== off-policy evaluation ==")
            bench_ope(path)
        if not args.skip_calibration:
            print("\n== calibration ==")
            bench_calibration(path)


if __name__ == "__main__":
    main()
