"""RLIV against its baselines and ablations on UserAuthor-v0: lifelong pair value and clicks.

Arms (all `recoworld.agents.rliv.RLIVAgent` variants, same network and budget): ``myopic``
(supervised immediate click/follow/gift), ``request-rl`` (ordinary MDP over every request),
``rliv`` (SCRI-MDP + ASA + multi-task critic + auxiliary task), ``rliv-no-mtcl`` (gift critic
head alone), ``rliv-no-aux`` (no auxiliary task); ``random`` slates as a reference.

Each (arm, seed) trains online on ``--n-envs`` users for ``--timesteps`` user-steps, and is
evaluated greedily ``--evals`` times along the way on the same ``--eval-users`` users (seed
``EVAL_SEED + seed``, the same people for every arm: common random numbers), each for one
episode of ``--n-requests`` requests. Printed per arm, mean ± 95% CI over seeds of the final
evaluation: return, clicks, follows and gifts per user; pair value = follows + gifts per pair
that met (x100) over the horizon; and, for convergence speed, the return after a quarter of
the budget.

    python benchmarks/rliv.py --quick                      # a smoke run (~1 min)
    python benchmarks/rliv.py --seeds 0 1 2 --jobs 2       # the docs table
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

import numpy as np

ENV_ID = "recoworld/UserAuthor-v0"
EVAL_SEED = 50_000  # evaluation users, far from the training users' seeds
ARMS: dict[str, dict[str, Any]] = {
    "random": {},
    "myopic": {"mode": "myopic"},
    "request-rl": {"mode": "request"},
    "rliv": {},
    "rliv-no-mtcl": {"mtcl": False},
    "rliv-no-aux": {"aux": False},
}
COLUMNS = ("return", "clicks", "follows", "gifts", "pair_value", "early_return")


def evaluate(agent: Any, seed: int, users: int, env_kwargs: dict[str, Any]) -> dict[str, float]:
    """One greedy episode of each of ``users`` users (or random slates when ``agent`` is None).

    Returns per-user means of return, clicks, follows, gifts, and pair value: follows + gifts
    per 100 user–author pairs that met at least once.
    """
    import gymnasium as gym

    import recoworld  # noqa: F401

    env = gym.make_vec(ENV_ID, num_envs=users, vectorization_mode="vector_entry_point",
                       **env_kwargs)  # fmt: skip
    obs, info = env.reset(seed=EVAL_SEED + seed)
    gen = np.random.default_rng(seed)
    tot = np.zeros(4)
    done = np.zeros(users, bool)
    while not done.all():
        if agent is None:
            k = env.single_action_space.nvec[0]
            action = np.argsort(gen.random((users, k)), 1)[:, : env.single_action_space.shape[0]]
        else:
            action = agent.recommend(obs, info).action
        obs, reward, term, trunc, info = env.step(action)
        tot += [reward.sum(), info["clicks"].any(1).sum(), info["followed"].sum(),
                info["gifted"].sum()]  # fmt: skip
        done |= term | trunc
    core = env.unwrapped.core
    pairs = (core.p_meets > 0).sum()
    env.close()
    ret, clicks, follows, gifts = tot / users
    return {
        "return": ret,
        "clicks": clicks,
        "follows": follows,
        "gifts": gifts,
        "pair_value": 100.0 * (follows + gifts) * users / max(pairs, 1),
    }


def run_one(task: tuple[str, int, dict[str, Any]]) -> tuple[str, int, dict[str, float], float]:
    """Train and evaluate one (arm, seed)."""
    arm, seed, cfg = task
    import torch

    torch.set_num_threads(1)
    start = time.monotonic()
    env_kwargs = cfg["env_kwargs"]
    if arm == "random":
        final = evaluate(None, seed, cfg["eval_users"], env_kwargs)
        final["early_return"] = final["return"]
        return arm, seed, final, time.monotonic() - start
    from recoworld.agents.rliv import RLIVAgent, RLIVArgs

    args = RLIVArgs(**{**cfg["agent"], **ARMS[arm]})
    agent = RLIVAgent.for_env(ENV_ID, cfg["n_envs"], seed, args, **env_kwargs)
    chunk = cfg["timesteps"] // cfg["evals"]
    curve = []
    for _ in range(cfg["evals"]):
        agent.learn(chunk, reset_num_timesteps=False)
        curve.append(evaluate(agent, seed, cfg["eval_users"], env_kwargs))
    final = dict(curve[-1])
    final["early_return"] = curve[max(len(curve) // 4 - 1, 0)]["return"]
    return arm, seed, final, time.monotonic() - start


def table(results: list[tuple[str, int, dict[str, float], float]], arms: list[str]) -> str:
    from recoworld.metrics import mean_ci

    head = f"{'arm':14s}" + "".join(f"{c:>18s}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for arm in arms:
        rows = [r for a, _, r, _ in results if a == arm]
        cells = []
        for c in COLUMNS:
            m, h = mean_ci([r[c] for r in rows])
            digits = 3 if c == "gifts" else 2
            cells.append(
                f"{m:>10.{digits}f} ± {h:<5.{digits}f}" if np.isfinite(h) else f"{m:>18.{digits}f}"
            )
        lines.append(f"{arm:14s}" + "".join(f"{x:>18s}" for x in cells))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="processes over seeds x arms")
    ap.add_argument("--quick", action="store_true", help="a tiny budget, to check the script")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--timesteps", type=int, default=64_000, help="training user-steps per run")
    ap.add_argument("--n-envs", type=int, default=64, help="training users stepped together")
    ap.add_argument("--evals", type=int, default=4, help="evaluations along training")
    ap.add_argument("--eval-users", type=int, default=256)
    ap.add_argument("--n-requests", type=int, default=100, help="requests per episode")
    args = ap.parse_args()
    if args.quick:
        args.timesteps, args.n_envs, args.eval_users, args.evals = 4_000, 16, 32, 2
        args.n_requests = min(args.n_requests, 50)
        args.seeds = args.seeds[:2]
    cfg = {
        "timesteps": args.timesteps,
        "n_envs": args.n_envs,
        "evals": args.evals,
        "eval_users": args.eval_users,
        "env_kwargs": {"n_requests": args.n_requests},
        "agent": {},
    }
    tasks = [(arm, seed, cfg) for seed in args.seeds for arm in args.arms]
    start = time.monotonic()
    results = []
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for res in pool.imap_unordered(run_one, tasks):
                print(f"  {res[0]} seed {res[1]}: return {res[2]['return']:.2f} ({res[3]:.0f}s)",
                      flush=True)  # fmt: skip
                results.append(res)
    else:
        for task in tasks:
            res = run_one(task)
            print(f"  {res[0]} seed {res[1]}: return {res[2]['return']:.2f} ({res[3]:.0f}s)",
                  flush=True)  # fmt: skip
            results.append(res)
    print(
        f"\n{ENV_ID}, n_requests={args.n_requests}; {args.timesteps} training user-steps per run "
        f"({args.n_envs} users at once), {args.eval_users} evaluation users, seeds {args.seeds}; "
        f"mean ± 95% CI over seeds; wall {time.monotonic() - start:.0f}s\n"
        "per user over the horizon: return, clicks, follows, gifts; pair_value = follows + gifts "
        "per 100 pairs met; early_return = return after 1/4 of the budget\n"
    )
    print(table(results, args.arms))


if __name__ == "__main__":
    main()
