"""Does the hierarchy help novelty-seeking users? The ablation of `HierarchicalNoveltyAgent`.

Three comparisons, every learner trained for the same ``--timesteps`` user-steps with the same
torso (`CandidateExtractor`, hidden 64, embedding 32; critic 64-64), then evaluated on the same
``--users`` users (common random numbers: every arm resets the eval env with the same seed),
each user's first episode (14 days of sessions, or until churn) counted once:

(a) on ``recoworld/NoveltySeeking-v0`` users (static trait x session propensity, kappa = 2):
    HRL vs flat PPO (the same module, hierarchy off), PPO with entropy regularisation
    (``ent_coef`` 0.01), SB3 PPO (`CandidatePolicy`) and greedy: return and next-day return;
(b) the same HRL and flat PPO on the control population ``novelty_seeking(kappa=inf)``, whose
    session propensity equals its trait (no session-level variation);
(c) HRL trained with the exploration terms on (`recoworld.envs.exploration`, weights
    ``--explore-weight`` for diversity, novelty and serendipity) vs off: the exploration
    metrics against clicks. Evaluation always measures the env's own reward.

Learned policies are evaluated as trained: sampled (PPO optimises its stochastic policy); a
later table shows the same policies showing their top slate. Cells are mean ± 95% CI over
training seeds (Student t); "HRL − flat" is the paired difference per seed (same eval users).
Exploration metrics, per step and user: topic diversity of the slate, normalised
self-information of the slate (p = share of the evaluated users who clicked the item so far),
serendipity (share of clicks on a topic new to the user).

    python benchmarks/hrl_novelty.py --quick                 # smoke run, about a minute
    python benchmarks/hrl_novelty.py --seeds 0 1 2 3 --jobs 16 --timesteps 120000
    python benchmarks/hrl_novelty.py --levels --seeds 0 1 2 --timesteps 60000 --jobs 3

``--levels`` runs only a diagnostic: the trained HRL low level under learned, fixed and
"oracle" levels (read from the users' hidden session propensity, which agents never see).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from typing import Any

import numpy as np

ENV_ID = "recoworld/NoveltySeeking-v0"
EVAL_SEED = 50_000  # evaluation users: disjoint from every training seed's users
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}
COST = {"sb3_ppo": 3, "hrl_explore": 2, "hrl": 2, "flat_entropy": 1, "flat": 1}
METRICS = ("return", "next_day_return", "clicks_per_step", "diversity", "novelty", "serendipity")


def population(name: str) -> Any:
    from recoworld.users import novelty_seeking

    return novelty_seeking() if name == "novelty" else novelty_seeking(kappa=float("inf"))


def make_vec(pop: str, n: int, mode: str, explore: float = 0.0, **env_kwargs: Any) -> Any:
    import gymnasium as gym

    import recoworld  # noqa: F401
    from recoworld.envs.exploration import VectorExplorationReward

    env = gym.make_vec(
        ENV_ID,
        num_envs=n,
        vectorization_mode="vector_entry_point",
        autoreset_mode=mode,
        users=population(pop),
        **env_kwargs,
    )
    return VectorExplorationReward(env, explore, explore, explore)


def train_arm(arm: str, pop: str, seed: int, steps: int, args: argparse.Namespace) -> Any:
    """A trained recommender of kind ``arm``."""
    from recoworld.agents.hrl import HierarchicalNoveltyAgent

    kw = {"seed": seed, "n_envs": args.n_envs, "n_steps": args.n_steps}
    explore = args.explore_weight if arm == "hrl_explore" else 0.0
    if arm == "sb3_ppo":
        from stable_baselines3.common.vec_env import VecNormalize

        from recoworld.agents.sb3 import SB3Recommender
        from recoworld.agents.sb3.train import get_algorithm, seed_everything
        from recoworld.agents.sb3.vec_env import RecoSB3VecEnv

        seed_everything(seed)
        venv = VecNormalize(
            RecoSB3VecEnv(make_vec(pop, args.n_envs, "same_step")),
            norm_obs=False,
            gamma=0.95,
        )
        venv.seed(seed)
        model = get_algorithm("ppo").make(venv, seed=seed, total_timesteps=steps)
        model.learn(steps)
        return SB3Recommender(model, deterministic=False)
    cfg = {
        "hrl": {},
        "hrl_explore": {},
        "flat": {"hierarchy": False},
        "flat_entropy": {"hierarchy": False, "ent_coef": 0.01},
    }[arm]
    env = make_vec(pop, args.n_envs, "same_step", explore)
    agent = HierarchicalNoveltyAgent(env, **kw, **cfg, deterministic=False)
    agent.learn(steps)
    return agent


class SetLevels:
    """Diagnostic: a trained HRL agent's low level with levels set from outside — a fixed
    level, or (``level=None``) the "oracle" level ``floor(p * n_levels)`` of the user's hidden
    session propensity p, which no agent ever sees. Sampled slates."""

    def __init__(self, agent: Any, env: Any, level: int | None) -> None:
        self.agent, self.env, self.level = agent, env, level

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Any:
        import torch as th

        from recoworld.agents.hrl_nets import sample_slate
        from recoworld.types import Recommendation

        a, g = self.agent, self.agent.config.n_levels
        if self.level is None:
            p = self.env.unwrapped.core.state.propensity
            lv = np.clip(np.floor(p * g), 0, g - 1).astype(np.int64)
        else:
            lv = np.full(obs["user"].shape[0], self.level, np.int64)
        with th.no_grad():
            scores, _ = a.low(a._tensors(obs), th.as_tensor(lv))
            act = sample_slate(scores, a.slate_size, a.generator, False).numpy()
        return Recommendation(a._format(act), np.ones(act.shape), extras={"level": lv})


def evaluate(rec: Any, pop: str, n_users: int) -> dict[str, float]:
    """Per-user means over each user's first episode, then the mean over users; ``rec`` is a
    recommender or a function of the eval env that returns one."""
    env = make_vec(pop, n_users, "next_step")
    if not hasattr(rec, "recommend"):
        rec = rec(env)
    obs, info = env.reset(seed=EVAL_SEED)
    if hasattr(rec, "reset"):
        rec.reset(None)
    acc = {k: np.zeros(n_users) for k in ("ret", "steps", "clicks", "ends", "next", "div",
                                          "nov", "ser")}  # fmt: skip
    live = np.ones(n_users, bool)
    levels, props = [], []  # diagnostic: the hidden session propensity (never shown to agents)
    while live.any():
        rec_out = rec.recommend(obs, info)
        if "level" in rec_out.extras and getattr(rec, "config", None) and rec.config.hierarchy:
            levels.append(np.asarray(rec_out.extras["level"])[live])
            props.append(env.unwrapped.core.state.propensity[live].copy())
        obs, _, term, trunc, info = env.step(rec_out.action)
        acc["ret"][live] += info["env_reward"][live]
        acc["steps"][live] += 1
        acc["clicks"][live] += np.asarray(info["clicks"]).reshape(n_users, -1).sum(1)[live]
        acc["ends"][live] += np.asarray(info["left"])[live]
        acc["next"][live] += (np.asarray(info["return_days"]) == 1)[live]
        acc["div"][live] += info["exploration_diversity"][live]
        acc["nov"][live] += info["exploration_novelty"][live]
        acc["ser"][live] += info["exploration_serendipity"][live]
        live &= ~(np.asarray(term) | np.asarray(trunc))
    env.close()
    with np.errstate(invalid="ignore", divide="ignore"):
        per_user = {
            "return": acc["ret"],
            "next_day_return": np.where(acc["ends"] > 0, acc["next"] / acc["ends"], np.nan),
            "clicks_per_step": acc["clicks"] / acc["steps"],
            "diversity": acc["div"] / acc["steps"],
            "novelty": acc["nov"] / acc["steps"],
            "serendipity": np.where(acc["clicks"] > 0, acc["ser"] / acc["clicks"], np.nan),
        }
    out = {k: float(np.nanmean(v)) for k, v in per_user.items()}
    if levels:
        lv, pr = np.concatenate(levels).astype(float), np.concatenate(props)
        out["level_propensity_corr"] = float(np.corrcoef(lv, pr)[0, 1]) if lv.std() else 0.0
        out["mean_level"] = float(lv.mean())
    return out


def job(task: tuple[str, str, int, argparse.Namespace]) -> tuple[str, str, int, dict[str, float]]:
    import torch

    torch.set_num_threads(1)
    arm, pop, seed, args = task
    start = time.monotonic()
    if arm == "levels":  # how much do the levels matter to the trained low level?
        agent = train_arm("hrl", pop, seed, args.timesteps, args)
        g = agent.config.n_levels
        variants: dict[str, Any] = {"learned": agent, "oracle": None}
        variants.update({f"fixed_{i}": i for i in range(g)})
        out = {}
        for name, level in variants.items():
            rec_for = (
                agent if name == "learned" else (lambda env, lv=level: SetLevels(agent, env, lv))
            )
            out.update({f"{name}/{k}": v for k, v in evaluate(rec_for, pop, args.users).items()})
        out["seconds"] = time.monotonic() - start
        return arm, pop, seed, out
    if arm in ("greedy", "random"):
        from recoworld.agents.base import make_recommender

        rec: Any = make_recommender(arm, make_vec(pop, 1, "next_step"), seed)
    else:
        rec = train_arm(arm, pop, seed, args.timesteps, args)
    out = evaluate(rec, pop, args.users)
    if hasattr(rec, "deterministic"):  # the same policy, its top slate each step
        rec.deterministic = True
        det = evaluate(rec, pop, args.users)
        out.update({f"top_{k}": v for k, v in det.items()})
    out["seconds"] = time.monotonic() - start
    return arm, pop, seed, out


def ci(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, float)
    if v.size < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), T95.get(v.size - 1, 2.0) * float(v.std(ddof=1)) / np.sqrt(v.size)


def fmt(values: list[float], digits: int) -> str:
    m, h = ci(values)
    return f"{m:.{digits}f} ± {h:.{digits}f}" if np.isfinite(h) else f"{m:.{digits}f}"


def levels_study(args: argparse.Namespace) -> None:
    """Train HRL per seed; evaluate its low level with learned, oracle and fixed levels."""
    tasks = [("levels", "novelty", s, args) for s in args.seeds]
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            results = pool.map(job, tasks)
    else:
        results = [job(t) for t in tasks]
    outs = [r[3] for r in results]
    print(
        f"level diagnostic: HRL trained {args.timesteps} user-steps, seeds {args.seeds}, "
        f"{args.users} eval users (NoveltySeeking-v0), sampled slates; mean ± 95% CI over seeds\n"
    )
    print("| levels from | return | next-day return | clicks/step | serendipity |")
    print("|---|---|---|---|---|")
    names = sorted({k.split("/")[0] for k in outs[0] if "/" in k}, key=lambda n: (n[0], n))
    for name in names:
        cells = [fmt([o[f"{name}/{m}"] for o in outs], d) for m, d in
                 (("return", 2), ("next_day_return", 3), ("clicks_per_step", 3),
                  ("serendipity", 3))]  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")
    d = [o["oracle/return"] - o["learned/return"] for o in outs]
    print(f"\noracle − learned levels, paired: return {fmt(d, 2)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--timesteps", type=int, default=30_000, help="training user-steps per arm")
    p.add_argument("--users", type=int, default=256, help="evaluation users")
    p.add_argument("--jobs", type=int, default=2, help="processes (seeds x arms in parallel)")
    p.add_argument("--n-envs", type=int, default=16, help="users stepped together in training")
    p.add_argument("--n-steps", type=int, default=64, help="rollout length per user")
    p.add_argument("--explore-weight", type=float, default=0.3, help="weight of each term in (c)")
    p.add_argument("--quick", action="store_true", help="2 seeds, 4,096 steps, 64 users")
    p.add_argument("--save", default=None, help="append each job's result to this JSON-lines file")
    p.add_argument("--load", default=None, help="print the tables of a --save file, run nothing")
    p.add_argument(
        "--levels",
        action="store_true",
        help="only the level diagnostic: train HRL, evaluate its low level under learned, "
        "oracle (hidden propensity) and fixed levels",
    )
    args = p.parse_args()
    if args.quick:
        args.seeds, args.timesteps, args.users = [0, 1], 4096, 64
    if args.levels:
        levels_study(args)
        return
    arms_novelty = ["hrl", "flat", "flat_entropy", "sb3_ppo", "hrl_explore"]
    tasks = [(a, "novelty", s, args) for s in args.seeds for a in arms_novelty]
    tasks += [(a, "control", s, args) for s in args.seeds for a in ("hrl", "flat")]
    tasks += [(a, pop, 0, args) for pop in ("novelty", "control") for a in ("greedy", "random")]
    tasks.sort(key=lambda t: COST.get(t[0], 0), reverse=True)  # longest first: shorter tail
    start = time.monotonic()
    results: list[tuple[str, str, int, dict[str, float]]] = []
    if args.load:
        for line in open(args.load):
            row = json.loads(line)
            results.append((row["arm"], row["pop"], row["seed"], row["out"]))
        args.seeds = sorted({r[2] for r in results if r[0] not in ("greedy", "random")})
    else:
        pool = mp.get_context("spawn").Pool(args.jobs) if args.jobs > 1 else None
        it = pool.imap_unordered(job, tasks) if pool else map(job, tasks)
        for arm, pop, seed, out in it:
            results.append((arm, pop, seed, out))
            print(f"done {arm} {pop} seed {seed} in {out['seconds']:.0f}s", flush=True)
            if args.save:
                with open(args.save, "a") as f:
                    row = {"arm": arm, "pop": pop, "seed": seed, "out": out}
                    f.write(json.dumps(row) + "\n")
        if pool:
            pool.close()
    wall = time.monotonic() - start
    res: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for arm, pop, seed, out in results:
        res.setdefault((arm, pop), {})[seed] = out

    def col(arm: str, pop: str, m: str) -> list[float]:
        return [v[m] for v in res[(arm, pop)].values()]

    digits = {"return": 2, "next_day_return": 3, "clicks_per_step": 3, "diversity": 3,
              "novelty": 3, "serendipity": 3}  # fmt: skip
    print(
        f"seeds {args.seeds}, {args.timesteps} training user-steps per arm, {args.users} eval "
        f"users, explore weight {args.explore_weight}; wall {wall:.0f}s with {args.jobs} jobs\n"
    )
    print("(a, b) return and next-day return, mean ± 95% CI over training seeds\n")
    print("| population | arm | return | next-day return | clicks/step |")
    print("|---|---|---|---|---|")
    rows = [("novelty", a) for a in ["hrl", "flat", "flat_entropy", "sb3_ppo", "greedy", "random"]]
    rows += [("control", a) for a in ("hrl", "flat", "greedy", "random")]
    for pop, arm in rows:
        cells = [fmt(col(arm, pop, m), digits[m]) for m in METRICS[:3]]
        print(f"| {pop} | {arm} | " + " | ".join(cells) + " |")
    print("\npaired HRL − flat per training seed (same eval users), mean ± 95% CI\n")
    print("| population | Δ return | Δ next-day return | Δ clicks/step |")
    print("|---|---|---|---|")
    for pop in ("novelty", "control"):
        cells = []
        for m in METRICS[:3]:
            d = [res[("hrl", pop)][s][m] - res[("flat", pop)][s][m] for s in args.seeds]
            cells.append(fmt(d, digits[m]))
        print(f"| {pop} | " + " | ".join(cells) + " |")
    print("\n(c) exploration terms off vs on (HRL, NoveltySeeking-v0 users)\n")
    print("| arm | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for arm in ("hrl", "hrl_explore"):
        cells = [fmt(col(arm, "novelty", m), digits[m]) for m in METRICS]
        print(f"| {arm} | " + " | ".join(cells) + " |")
    cells = []
    for m in METRICS:
        d = [res[("hrl_explore", "novelty")][s][m] - res[("hrl", "novelty")][s][m]
             for s in args.seeds]  # fmt: skip
        cells.append(fmt(d, digits[m]))
    print("| on − off (paired) | " + " | ".join(cells) + " |")
    print("\nthe same trained policies shown their top slate (deterministic) instead of sampled\n")
    print("| population | arm | return | clicks/step | diversity |")
    print("|---|---|---|---|---|")
    for pop, arm in rows:
        if "top_return" in next(iter(res[(arm, pop)].values())):
            cells = [fmt(col(arm, pop, f"top_{m}"), digits[m]) for m in
                     ("return", "clicks_per_step", "diversity")]  # fmt: skip
            print(f"| {pop} | {arm} | " + " | ".join(cells) + " |")
    print("\nHRL diagnostic: correlation of the chosen level with the user's hidden session")
    print("propensity over evaluation steps (sampled), and the mean level (0 .. n_levels - 1)\n")
    print("| population | arm | corr(level, propensity) | mean level |")
    print("|---|---|---|---|")
    for pop, arm in [("novelty", "hrl"), ("novelty", "hrl_explore"), ("control", "hrl")]:
        if "level_propensity_corr" in next(iter(res[(arm, pop)].values())):
            c1 = fmt(col(arm, pop, "level_propensity_corr"), 3)
            print(f"| {pop} | {arm} | {c1} | {fmt(col(arm, pop, 'mean_level'), 2)} |")
    secs = {arm: np.mean([v["seconds"] for v in per.values()]) for (arm, _), per in res.items()}
    print("\nmean seconds per job: " + ", ".join(f"{a} {s:.0f}" for a, s in sorted(secs.items())))


if __name__ == "__main__":
    main()
