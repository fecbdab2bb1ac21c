"""From logs to a simulator: log a "real" world, calibrate simulated users from the log, and
check that the calibrated simulator behaves like the world the log came from.

1. simulate engagement users under a uniformly random recommender and keep only the log;
2. calibrate a population and a catalog from the log (recoworld.replay.calibration);
3. simulate the calibrated world with the same recommender and compare (fidelity report);
4. evaluate another policy off-policy on the same log (recoworld.replay.validation).

python examples/calibrate_from_logs.py [--users 500 --days 5 --out runs/calibrate-example]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from recoworld.envs.config import EnvConfig
from recoworld.replay.calibration import calibrate, fidelity_report
from recoworld.replay.validation import SoftmaxPolicy, UniformPolicy, evaluate_log, format_rows
from recoworld.simulation import simulate


def main(users: int, days: int, out: Path, prior_draws: int) -> None:
    world = {"n_items": 300, "n_topics": 10, "dim": 16}
    simulate(
        "engagement", ("random",), n_users=users, days=days, seed=0, out_dir=out / "real", **world
    )
    log = out / "real" / "trajectories"

    result = calibrate(log, n_prior_draws=prior_draws, seed=0)
    print("fitted parameters (base = the engagement preset's defaults):")
    print(result.table())
    result.save(out / "calibrated")

    simulate(
        recommenders=("random",),
        n_users=users,
        days=days,
        seed=0,
        out_dir=out / "simulated",
        **result.simulate_kwargs(),
    )
    report = fidelity_report(log, out / "simulated" / "trajectories", calibration=result)
    print("\nlogged world vs calibrated simulator:")
    print(report.table())
    try:
        report.plot(out / "fidelity.png")
    except ImportError:  # matplotlib is the optional "plot" extra
        pass

    catalog = EnvConfig(**world).make_catalog()  # the real world's catalog, to score targets
    targets = {
        "uniform": UniformPolicy(slate_size=5),
        "softmax_popularity": SoftmaxPolicy(catalog, "popularity", 0.5, slate_size=5),
    }
    rows = evaluate_log(log, targets, n_bootstrap=200)
    print("\noff-policy estimates of clicks per step on the same log:")
    print(format_rows(rows, 0.05))
    print(f"\nwrote {out}/ (calibrated/population.json, calibrated/catalog.npz, fidelity.png)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--prior-draws", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.out is None:
        with tempfile.TemporaryDirectory() as tmp:
            main(args.users, args.days, Path(tmp), args.prior_draws)
    else:
        main(args.users, args.days, args.out, args.prior_draws)
