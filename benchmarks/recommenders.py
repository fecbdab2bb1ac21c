"""The recommender results table: do the environments tell good recommenders from bad ones?

(a) LinUCB and linear Thompson sampling vs random on Engagement-v0, clicks per step;
(b) instruction-following popularity vs popularity on Retention-v0, session length and next-day
    return rate: the RecoWorld claim ("user instructs, recommender responds");
(c) a diagnostic for (b): the same wrapper around recommenders whose slates make users speak up
    (greedy similarity, random).

Every recommender meets the same users (common random numbers, `recoworld.evaluate`); cells are
mean ± 95% CI over episodes (one per user), and "paired Δ" is the mean ± 95% CI of the per-user
difference, which removes the between-user variance. Writes docs/results_recommenders.md and
prints the same text. About 3-4 minutes on one core with the defaults.

    python benchmarks/recommenders.py [--users 256] [--seeds 0 1 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

import recoworld
from recoworld.agents.base import RECOMMENDERS, _load_builtin_agents
from recoworld.cli.progress import ProgressBar
from recoworld.evaluation import METRICS, EvaluationResult, evaluate

ROOT = Path(__file__).resolve().parents[1]


def cell(result: EvaluationResult, name: str, metric: str) -> str:
    mean, half = result.summary[name][metric]
    fmt = METRICS[metric][1]
    return f"{fmt.format(mean)} ± {fmt.format(half)}"


def delta(result: EvaluationResult, a: str, b: str, metric: str) -> tuple[str, str]:
    """The paired difference ``a - b`` as text, and a verdict (higher is better)."""
    mean, half = result.difference(a, b, metric)
    if mean == 0 and (half == 0 or np.isnan(half)):
        return "0 (identical episodes)", "no difference"
    verdict = "better" if mean - half > 0 else "worse" if mean + half < 0 else "not significant"
    digits = 4 if abs(mean) < 0.1 else 3
    return f"{mean:+.{digits}f} ± {half:.{digits}f}", verdict


def bandits(users: int, seeds: list[int], progress: ProgressBar) -> list[str]:
    _load_builtin_agents()
    wanted = ["linucb", "thompson"]
    missing = [n for n in wanted if n not in RECOMMENDERS]
    lines = ["## (a) Bandits vs random on Engagement-v0: clicks per step", ""]
    if missing:
        return [
            *lines,
            f"Not measured: {missing} are not registered in this checkout. Rerun this script "
            "once `recoworld.agents.bandits` registers them.",
            "",
        ]
    names = ["random", *wanted]
    t0 = time.perf_counter()
    res = evaluate(names, "recoworld/Engagement-v0", n_users=users, seeds=seeds, progress=progress)
    lines += [
        "| recommender | clicks per step | paired Δ vs random | verdict | return |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        if name == "random":
            d, v = "", ""
        else:
            d, v = delta(res, name, "random", "clicks_per_step")
        lines.append(
            f"| {name} | {cell(res, name, 'clicks_per_step')} | {d} | {v} | "
            f"{cell(res, name, 'return')} |"
        )
    lines += [
        "",
        f"{res.episodes('random')} episodes (one session each) per recommender; the bandits "
        "start from scratch at each seed and learn online, one model shared by the seed's "
        f"users. ({time.perf_counter() - t0:.0f} s)",
        "",
        "<details><summary>all metrics</summary>",
        "",
        res.table(markdown=True),
        "",
        "</details>",
        "",
    ]
    return lines


def instruction_claim(users: int, seeds: list[int], progress: ProgressBar) -> list[str]:
    pairs = [
        ("popularity", "instruction_popularity"),
        ("greedy", "instruction_greedy"),
        ("random", "instruction_random"),
    ]
    _load_builtin_agents()
    pairs = [p for p in pairs if all(n in RECOMMENDERS for n in p)]
    names = [n for p in pairs for n in p]
    t0 = time.perf_counter()
    res = evaluate(names, "recoworld/Retention-v0", n_users=users, seeds=seeds, progress=progress)
    took = time.perf_counter() - t0
    head = [
        "| recommender | session length | paired Δ | next-day return | paired Δ | return "
        "| instructions / 100 steps |",
        "|---|---|---|---|---|---|---|",
    ]

    def rows(base: str, follower: str) -> tuple[list[str], list[str]]:
        ds = [delta(res, follower, base, m) for m in ("session_length", "next_day_return")]
        out = []
        for name in (base, follower):
            cells = [cell(res, name, m) for m in ("session_length", "next_day_return")]
            d = [
                ("" if name != follower else x if v == "no difference" else f"{x} ({v})")
                for x, v in ds
            ]
            out.append(
                f"| {name} | {cells[0]} | {d[0]} | {cells[1]} | {d[1]} | "
                f"{cell(res, name, 'return')} | {cell(res, name, 'instructions')} |"
            )
        return out, [v for _, v in ds]

    claim, verdicts = rows(*pairs[0])
    said = res.summary["popularity"]["instructions"][0]
    won = all(v == "better" for v in verdicts)
    lines = [
        "## (b) Instruction-following popularity vs popularity on Retention-v0",
        "",
        "The RecoWorld claim: following the user's instructions keeps users longer (session "
        "length) and brings them back sooner (share of session ends followed by a session the "
        "next day).",
        "",
        *head,
        *claim,
        "",
        f"**Verdict: {'won' if won else 'not shown'}** (session length: {verdicts[0]}; "
        f"next-day return: {verdicts[1]}).",
        "",
    ]
    if not won and said < 0.1:
        lines += [
            f"Diagnosis: under popularity users give {said:.3f} instructions per 100 steps. An "
            "instruction is triggered by boredom (over-exposure to one topic) or low "
            "satisfaction, and the popularity recommender (most popular candidates not shown "
            "recently) shows varied, well-liked slates, so users almost never speak up; with no "
            "active instruction the wrapper returns the base's own slates, and under common "
            "random numbers the episodes are then the same. The user model rewards compliance "
            "only by sparing the hazard penalty of an ignored instruction (USER_MODEL.md: no "
            "bonus, so an agent cannot farm 'annoy, then comply'), so there is nothing to gain "
            "where nothing is asked. The environment was not changed to make the claim hold; "
            "(c) shows the effect where instructions do occur.",
            "",
        ]
    elif not won:
        lines += [
            f"Diagnosis: users give {said:.2f} instructions per 100 steps under popularity, yet "
            "following them did not change session length and next-day return significantly: "
            "the hazard penalty of an ignored instruction acts only while one is active, a small "
            "share of all steps. The environment was not changed to make the claim hold.",
            "",
        ]
    lines += [
        "## (c) Diagnostic: the same wrapper where users speak up",
        "",
        "Greedy (similarity to the recent clicks) narrows slates to one topic, so users get "
        "bored and ask for less of it; random's slates are mostly far from their interests, and "
        "users speak up now and then.",
        "",
        *head,
    ]
    diag = [rows(*pair) for pair in pairs[1:]]
    for table_rows, _ in diag:
        lines += table_rows
    if diag and diag[0][1][0] == "better" and diag[0][1][1] != "better":
        lines += [
            "",
            "Where users do speak up, following them lengthens sessions (the hazard penalty of "
            "an ignored instruction is avoided) but does not move next-day return: the return "
            "gap depends on the whole session's satisfaction and on staleness (topic overlap "
            "with earlier sessions), while the re-ranking changes only the few steps during "
            "which an instruction is active.",
        ]
    lines += [
        "",
        f"{res.episodes('popularity')} episodes (one user's 14 days each) per recommender. "
        f"({took:.0f} s)",
        "",
        "<details><summary>all metrics</summary>",
        "",
        res.table(markdown=True),
        "",
        "</details>",
        "",
    ]
    return lines


def main(users: int, seeds: list[int], out: Path | None) -> str:
    progress = ProgressBar()
    t0 = time.perf_counter()
    body = bandits(users, seeds, progress) + instruction_claim(users, seeds, progress)
    text = "\n".join(
        [
            "# Recommender results",
            "",
            f"Produced by `python benchmarks/recommenders.py --users {users} --seeds "
            f"{' '.join(map(str, seeds))}` (recoworld {recoworld.__version__}, numpy "
            f"{np.__version__}, Python {platform.python_version()}; "
            f"{time.perf_counter() - t0:.0f} s). Seed s evaluates the users of env seeds "
            f"s·{users} … s·{users}+{users - 1}, {users * len(seeds)} users in all; every "
            "recommender meets the same users (common random numbers). Cells: mean ± 95% CI "
            "(normal approximation, `recoworld.metrics.mean_ci`) over episodes; paired Δ: "
            "mean ± 95% CI of the per-episode difference on the same users; verdicts compare "
            "that interval with 0.",
            "",
            *body,
        ]
    )
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return text


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=256, help="users per seed (default: 256)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results_recommenders.md")
    args = ap.parse_args()
    main(args.users, args.seeds, args.out)
