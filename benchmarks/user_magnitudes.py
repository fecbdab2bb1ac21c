"""Measure the magnitudes USER_MODEL.md asks of each preset under simple recommenders.

Prints, per preset and recommender: click rate per step, median session length, next-day
return rate (share of session ends followed by a session the next day), two-week churn (share of
users churned by day 14) and instructions per 100 steps.

    python benchmarks/user_magnitudes.py [--users 2000]
"""

from __future__ import annotations

import argparse

import numpy as np

from recoworld.agents import PopularityRecommender
from recoworld.envs import RecoVectorEnv


def measure(preset: str, policy: str, users: int, seed: int = 0, **kwargs: object) -> dict:
    env = RecoVectorEnv(num_envs=users, users=preset, multi_session=True, horizon_days=14, **kwargs)
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    k, s = env.config.num_candidates, env.config.slate_size
    popular = PopularityRecommender(env.single_action_space, env.catalog)
    steps = clicks = instr = 0
    session_len = np.zeros(users, np.int64)
    lengths, gaps = [], []
    finished = np.zeros(users, bool)
    churned = np.zeros(users, bool)
    while not finished.all():
        if policy == "random":
            a = np.argsort(rng.random((users, k)), 1)[:, :s]
        elif policy == "popular":
            a = popular.recommend(obs, info).action
        else:  # one topic: the candidates of the most common topic among them
            topic = env.catalog.topic[info["candidate_ids"]]
            a = np.argsort(topic != topic[:, :1], 1, kind="stable")[:, :s]
        obs, _, term, trunc, info = env.step(a)
        live = ~finished
        steps += live.sum()
        clicks += (info["clicks"].any(1) & live).sum()
        instr += ((info["instruction"] != "") & live).sum()
        session_len += live
        ended = info["left"] & live
        lengths.extend(session_len[ended])
        session_len[ended] = 0
        gaps.extend(info["return_days"][ended & (info["return_days"] > 0)])
        churned |= term & live
        popular.reset(term | trunc)
        finished |= term | trunc
    gaps = np.asarray(gaps)
    return {
        "ctr": clicks / steps,
        "median_session": float(np.median(lengths)),
        "next_day": float((gaps == 1).mean()),
        "churn_14d": float(churned.mean()),
        "instr_per_100": 100 * instr / steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=2000)
    args = ap.parse_args()
    print(
        f"{'preset':16} {'policy':9} {'ctr':>6} {'med.sess':>8} {'next-day':>8} "
        f"{'churn14':>7} {'instr/100':>9}"
    )
    for preset in ("engagement", "novelty_seeking", "retention"):
        for policy in ("random", "popular", "onetopic"):
            m = measure(preset, policy, args.users)
            print(
                f"{preset:16} {policy:9} {m['ctr']:6.3f} {m['median_session']:8.1f} "
                f"{m['next_day']:8.3f} {m['churn_14d']:7.3f} {m['instr_per_100']:9.2f}"
            )


if __name__ == "__main__":
    main()
