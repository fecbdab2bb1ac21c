"""Logged sessions: evaluate recommenders off-policy on a log, calibrate simulated users from a
log, and convert public interaction logs to the log schema.

actions:
  evaluate   estimate what other policies would have earned on a log (IPS, SNIPS, DR, and
             per-slot IIPS / RIPS / PI for slates), with bootstrap CIs over sessions
  calibrate  fit a parametric population and a catalog to a log; write population.json,
             catalog.npz, calibration.json, and a fidelity report (fidelity.txt,
             fidelity.png) comparing the log with the calibrated simulator
  convert    RecBole .inter / MovieLens ratings / KuaiRand-style CSV -> one Parquet log

A log holds no observations, so `evaluate` can only evaluate policies that decide from the
logged candidates and the catalog: uniform (alias random), softmax_popularity and
softmax_quality (softmax over log-popularity or quality at --temperature), and registered
recommenders that expose probabilities(obs, info) (they get obs=None). Slates are drawn from a
policy's probabilities item by item (Plackett-Luce).

examples:
  recoworld simulate --preset engagement --recommenders random --out runs/log
  recoworld replay evaluate --log runs/log/trajectories --recommenders uniform softmax_popularity
  recoworld replay calibrate --log runs/log/trajectories --out runs/calibrated
  recoworld replay convert ml-100k/u.data --layout movielens --out ml100k.parquet
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

HELP = "evaluate off-policy on a log, calibrate users from a log, convert public logs"
BUILTIN_TARGETS = ("uniform", "random", "softmax_popularity", "softmax_quality")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    ev = actions.add_parser(
        "evaluate",
        help="off-policy estimates of policies on a log",
        description="Estimate, from a log with logging propensities, each target policy's\n"
        "mean reward per logged step, with percentile-bootstrap CIs over sessions.",
        formatter_class=raw,
    )
    ev.add_argument("--log", type=Path, required=True, help="log file or folder (Parquet/CSV)")
    ev.add_argument(
        "--recommenders",
        nargs="+",
        default=["uniform", "softmax_popularity"],
        metavar="NAME",
        help=f"target policies: {', '.join(BUILTIN_TARGETS)}, or registered recommenders with "
        "probabilities(obs, info) (default: uniform softmax_popularity)",
    )
    ev.add_argument(
        "--temperature", type=float, default=1.0, help="softmax temperature (default: 1.0)"
    )
    ev.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="catalog .npz (from replay calibrate) whose columns softmax targets use; default: "
        "the synthetic catalog simulate uses (EnvConfig defaults)",
    )
    ev.add_argument("--recommender", default=None, help="use only this logging recommender's rows")
    ev.add_argument(
        "--reward",
        choices=("clicks", "reward"),
        default="clicks",
        help="clicks per slot (default) or the logged step reward (slates of one only)",
    )
    ev.add_argument("--bootstrap", type=int, default=500, help="replicates (default: 500)")
    ev.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    ev.add_argument("--out", type=Path, default=None, help="also write the table as CSV here")

    cal = actions.add_parser(
        "calibrate",
        help="fit a parametric population to a log and report its fidelity",
        description="Fit item embeddings, user interests, choice temperature and no-click\n"
        "utility, watch, leave hazard and return gaps to a log (recoworld.replay.calibration);\n"
        "then simulate the calibrated population and compare it with the log.",
        formatter_class=raw,
    )
    cal.add_argument("--log", type=Path, required=True, help="log file or folder (Parquet/CSV)")
    cal.add_argument("--out", type=Path, required=True, help="output folder")
    cal.add_argument("--recommender", default=None, help="use only this recommender's rows")
    cal.add_argument("--n-items", type=int, default=None, help="catalog size (default: from log)")
    cal.add_argument("--dim", type=int, default=16, help="embedding dimension (default: 16)")
    cal.add_argument("--topics", type=int, default=None, help="topics (default: sqrt(items/3))")
    cal.add_argument(
        "--base",
        default="engagement",
        help="preset whose other parameters are kept (default: engagement)",
    )
    cal.add_argument(
        "--holdout", type=float, default=0.2, help="share of sessions held out (default: 0.2)"
    )
    cal.add_argument(
        "--prior-draws", type=int, default=64, help="draws of the interest prior (default: 64)"
    )
    cal.add_argument(
        "--simulate-recommender",
        default="random",
        help="recommender of the fidelity simulation (default: random)",
    )
    cal.add_argument("--users", type=int, default=None, help="users simulated (default: as logged)")
    cal.add_argument("--days", type=int, default=None, help="days simulated (default: as logged)")
    cal.add_argument(
        "--no-report", action="store_true", help="skip the fidelity simulation and report"
    )
    cal.add_argument("--seed", type=int, default=0, help="seed (default: 0)")

    conv = actions.add_parser(
        "convert",
        help="convert a public interaction log to the log schema",
        description="Convert RecBole atomic .inter files, MovieLens ratings or KuaiRand/KuaiRec\n"
        "CSV logs to one Parquet file in the log schema (recoworld.replay.converters).",
        formatter_class=raw,
    )
    conv.add_argument("src", type=Path, help="the input file")
    conv.add_argument(
        "--layout",
        required=True,
        choices=("recbole", "movielens", "kuairand", "kuairec"),
        help="the input's layout",
    )
    conv.add_argument("--out", type=Path, required=True, help="the Parquet file to write")
    conv.add_argument(
        "--session-gap",
        type=float,
        default=30.0,
        help="minutes of inactivity that start a new session (default: 30)",
    )


def run(args: argparse.Namespace) -> int:
    return {"evaluate": _evaluate, "calibrate": _calibrate, "convert": _convert}[args.action](args)


# ----------------------------------------------------------------------- evaluate
def _default_catalog() -> Any:
    from recoworld.envs.config import EnvConfig

    return EnvConfig().make_catalog()


def make_targets(
    names: list[str], catalog: Any, n_candidates: int, slate_size: int, temperature: float
) -> dict[str, Any]:
    """Target policies by name (see the module docstring)."""
    from types import SimpleNamespace

    from gymnasium import spaces

    from recoworld.agents.base import make_recommender
    from recoworld.errors import ConfigError
    from recoworld.replay.validation import SoftmaxPolicy, StochasticPolicy, UniformPolicy

    out: dict[str, Any] = {}
    for name in names:
        if name in ("uniform", "random"):
            out[name] = UniformPolicy(slate_size)
        elif name in ("softmax_popularity", "softmax_quality"):
            feature = name.split("_", 1)[1]
            out[name] = SoftmaxPolicy(catalog, feature, temperature, slate_size)
        else:
            space = (
                spaces.Discrete(n_candidates)
                if slate_size == 1
                else spaces.MultiDiscrete([n_candidates] * slate_size)
            )
            env_like = SimpleNamespace(
                single_action_space=space,
                action_space=space,
                unwrapped=SimpleNamespace(catalog=catalog),
            )
            rec = make_recommender(name, env_like, 0)
            if not isinstance(rec, StochasticPolicy):
                raise ConfigError(
                    f"recommender {name!r} has no probabilities(obs, info): off-policy "
                    "evaluation needs each target's action probabilities; use "
                    f"{', '.join(BUILTIN_TARGETS)} or a recommender that exposes them"
                )
            out[name] = rec
    return out


def _evaluate(args: argparse.Namespace) -> int:
    from recoworld.cli.progress import ProgressBar
    from recoworld.replay.calibration import load_catalog
    from recoworld.replay.validation import as_sessions, evaluate_log, format_rows

    log = as_sessions(args.log)
    if args.recommender is not None:
        import numpy as np

        log = log.take(np.flatnonzero(log.recommender == args.recommender))
    catalog = load_catalog(args.catalog) if args.catalog is not None else _default_catalog()
    n_candidates = int((log.candidate_ids >= 0).sum(1).max()) if log.n_steps else 0
    targets = make_targets(
        list(args.recommenders),
        catalog,
        n_candidates,
        int(log.slate_ids.shape[1]),
        args.temperature,
    )
    rows = evaluate_log(
        log,
        targets,
        reward=args.reward,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        progress=ProgressBar(),
    )
    print(format_rows(rows, 0.05))
    if args.out is not None:
        lines = ["target,estimator,estimate,low,high,note"]
        lines += [
            f"{r.target},{r.estimator},{r.estimate},{r.low},{r.high},{r.note.replace(',', ';')}"
            for r in rows
        ]
        _write_text(Path(args.out), "\n".join(lines) + "\n")
        print(f"\nwrote {args.out}")
    return 0


# ---------------------------------------------------------------------- calibrate
def _calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from recoworld.cli.progress import ProgressBar
    from recoworld.replay.calibration import LogArrays, calibrate, fidelity_report
    from recoworld.replay.validation import as_sessions
    from recoworld.simulation import simulate
    from recoworld.users.presets import preset

    sessions = as_sessions(args.log)
    arr = LogArrays.from_log(sessions, n_items=args.n_items, recommender=args.recommender)
    result = calibrate(
        arr,
        dim=args.dim,
        n_topics=args.topics,
        base=preset(args.base),
        holdout=args.holdout,
        n_prior_draws=args.prior_draws,
        seed=args.seed,
        progress=ProgressBar(),
    )
    print(result.table())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # everything is computed in a scratch folder first; files are moved into place at the end,
    # so a failed run leaves an earlier run's outputs untouched
    scratch = Path(tempfile.mkdtemp(prefix=".calibrate-", dir=out))
    try:
        report = None
        if not args.no_report:
            days = args.days or int(np.asarray(sessions.day).max()) + 1
            users = args.users or arr.n_users
            simulate(
                recommenders=(args.simulate_recommender,),
                n_users=users,
                days=days,
                seed=args.seed,
                out_dir=scratch / "simulated",
                progress=ProgressBar(),
                **result.simulate_kwargs(),
            )
            report = fidelity_report(
                arr, scratch / "simulated" / "trajectories", calibration=result
            )
            (scratch / "fidelity.txt").write_text(report.table() + "\n")
            try:
                report.plot(scratch / "fidelity.png")
            except ImportError:  # matplotlib is the optional "plot" extra
                pass
        result.save(scratch)
        written = _publish(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if report is not None:
        print()
        print(report.table())
    print(f"\nwrote {out}/")
    for name in written:
        print(f"  {name}")
    return 0


def _publish(scratch: Path, out: Path) -> list[str]:
    """Move every entry of ``scratch`` into ``out`` (replacing same-named ones); folders are
    swapped in whole. Returns the names moved."""
    names = sorted(p.name for p in scratch.iterdir())
    for name in names:
        src, dst = scratch / name, out / name
        if src.is_dir():
            old = out / f".{name}.old"
            shutil.rmtree(old, ignore_errors=True)
            if dst.exists():
                os.replace(dst, old)
            os.replace(src, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)
    return names


def _write_text(path: Path, text: str) -> None:
    from recoworld.replay.calibration import write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: tmp.write_text(text))


# ------------------------------------------------------------------------ convert
def _convert(args: argparse.Namespace) -> int:
    from recoworld.replay.converters import convert

    result = convert(args.src, args.layout, args.out, session_gap_minutes=args.session_gap)
    s = result.sessions
    print(
        f"wrote {args.out}: {s.n_steps} steps, {s.n_sessions} sessions, "
        f"{len(result.item_ids)} items"
    )
    return 0
