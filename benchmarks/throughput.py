"""Throughput and memory of the simulator, against a bare-numpy reference timed in the same run.

Measures, on this machine:

- user-steps/s of `RecoVectorEnv` with the Retention preset (10,000 items, K = 100 candidates,
  slates of 10, dim 32, multi-session over 14 days) under random actions at 1, 64, 1,024 and
  16,384 users;
- user-steps/s of a bare numpy step doing only the essential math of one step at the same sizes
  (gather the K candidates' embeddings, score them against the interest vector, a multinomial
  logit over the slate plus "no click", interest drift toward the clicked item, a leave draw),
  and the ratio env / reference;
- steps/s of the single `RecoEnv` (Retention, K = 10, slates of 2), resets included;
- the bytes of the user state of 1,000,000 users.

Random actions are drawn before timing (a pool of valid MultiDiscrete actions per batch size,
distinct indices within a slate), so action generation is not timed. Each measurement warms up,
then runs whole steps for at least ``--seconds`` in all, split into rounds that alternate between
the env and the reference; the best round's rate counts, so a burst of other load on the machine
does not skew the ratio.

    python benchmarks/throughput.py            # full benchmark (about a minute on 2 cores)
    python benchmarks/throughput.py --quick    # smoke run: 1 and 64 users, 1 s each, 10,000 users
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np

import recoworld.rng
from recoworld.envs import RecoEnv, RecoVectorEnv
from recoworld.envs.config import EnvConfig
from recoworld.envs.core import World

N_ITEMS, K, SLATE, DIM, HORIZON = 10_000, 100, 10, 32, 14
FULL_SIZES = (1, 64, 1_024, 16_384)
QUICK_SIZES = (1, 64)
TARGET_SIZES = (1_024, 16_384)  # where env >= TARGET_RATIO x reference is asked
TARGET_RATIO = 0.5
TARGET_SINGLE = 15_000.0  # single-env steps/s
MEMORY_USERS = 1_000_000
MEMORY_LIMIT = 1 << 30  # bytes
MEMORY_CHUNK = 100_000
WARMUP_STEPS = 2
ROUNDS = 4  # interleaved timing rounds per measurement (best counts)

# parameters of the reference step (magnitudes like the parametric user's; values do not
# change its cost)
TAU, U0, ETA, H0, H_SAT = 0.5, 0.0, 0.05, -2.5, 1.0


def timed(
    step: Callable[[int], object], seconds: float, start: int = 0, min_steps: int = 2
) -> tuple[int, float]:
    """Run ``step(start), step(start + 1), ...`` until ``seconds`` have passed (and at least
    ``min_steps`` times). Returns ``(steps, elapsed seconds)``."""
    steps, t0 = 0, time.perf_counter()
    while True:
        step(start + steps)
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and steps >= min_steps:
            return steps, elapsed


class Bench:
    """A warmed-up step function timed in rounds; `rate` is the best round's steps/s, so a
    round slowed by other load on the machine does not count against it."""

    def __init__(self, step: Callable[[int], object], warmup: int = WARMUP_STEPS) -> None:
        self.step = step
        for i in range(warmup):
            step(i)
        self.done = warmup
        self.steps = 0
        self.seconds = 0.0
        self.rate = 0.0

    def round(self, seconds: float) -> None:
        steps, elapsed = timed(self.step, seconds, self.done)
        self.done += steps
        self.steps += steps
        self.seconds += elapsed
        self.rate = max(self.rate, steps / elapsed)


def interleaved(benches: list[Bench], seconds: float, rounds: int) -> None:
    """Time ``benches`` alternately, ``rounds`` rounds of ``seconds / rounds`` each."""
    for _ in range(rounds):
        for b in benches:
            b.round(seconds / rounds)


def action_pool(n: int, k: int, s: int, seed: int, size: int) -> np.ndarray:
    """``(size, n, s)`` int64 random slates: ``s`` distinct candidate indices in ``[0, k)``."""
    gen = np.random.default_rng(seed)
    return np.stack([np.argsort(gen.random((n, k)), 1)[:, :s] for _ in range(size)])


def pool_size(n: int) -> int:
    return int(np.clip((1 << 18) // n, 4, 64))


# ----------------------------------------------------------------------------- the env
class VectorBench(Bench):
    """`RecoVectorEnv` with n Retention users under pre-drawn random actions."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.env = RecoVectorEnv(
            num_envs=n,
            users="retention",
            multi_session=True,
            horizon_days=HORIZON,
            n_items=N_ITEMS,
            num_candidates=K,
            slate_size=SLATE,
            dim=DIM,
        )
        self.env.reset(seed=seed)
        self.pool = action_pool(n, K, SLATE, seed + 1, pool_size(n))
        self.ended = 0  # user-steps that ended an episode (warm-up included)
        super().__init__(self._step)

    def _step(self, i: int) -> None:
        _, _, term, trunc, _ = self.env.step(self.pool[i % len(self.pool)])
        self.ended += int(np.count_nonzero(term | trunc))


# ----------------------------------------------------------------------- the reference
class BareStep:
    """Only the essential math of one step of n users, in plain numpy.

    Candidates are ``K`` random item ids (numpy Generator); their embeddings are gathered from a
    ``(N_ITEMS, DIM)`` float32 table and scored against each user's interest; the slate chosen
    by the action is the choice set of a multinomial logit with a "no click" option (one uniform
    per user); a click drifts the interest toward the clicked item (renormalised); a sigmoid
    hazard and one more uniform decide whether the user leaves.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.gen = np.random.default_rng(seed)
        table = self.gen.standard_normal((N_ITEMS, DIM), dtype=np.float32)
        self.table = table / np.linalg.norm(table, axis=1, keepdims=True)
        theta = self.gen.standard_normal((n, DIM), dtype=np.float32)
        self.theta = theta / np.linalg.norm(theta, axis=1, keepdims=True)
        self.rows = np.arange(n)
        self.leave = np.zeros(n, bool)

    def step(self, action: np.ndarray) -> None:
        gen, theta, rows = self.gen, self.theta, self.rows
        n = rows.size
        cand = gen.integers(0, N_ITEMS, (n, K))
        emb = self.table.take(cand, axis=0)  # (n, K, d); take: ~3x faster than table[cand]
        score = np.matmul(emb, theta[:, :, None])[:, :, 0]  # (n, K)
        logits = np.take_along_axis(score, action, 1) / TAU  # (n, L) the slate's items
        u = gen.random((n, 2))
        top = np.maximum(logits.max(1), U0 / TAU)
        ex = np.exp(logits - top[:, None])
        e0 = np.exp(U0 / TAU - top)
        bounds = e0[:, None] + np.cumsum(ex, 1)
        c = (bounds <= u[:, :1] * bounds[:, -1:]).sum(1)  # 0: slot 0 ... L-1, L: no click
        clicked = c < SLATE
        slot = np.minimum(c, SLATE - 1)
        e = emb[rows, action[rows, slot]]  # (n, d) the clicked item
        drift = theta + ETA * (e - theta)
        drift /= np.linalg.norm(drift, axis=1, keepdims=True)
        self.theta = np.where(clicked[:, None], drift, theta)
        hazard = 1.0 / (1.0 + np.exp(-(H0 - H_SAT * clicked)))
        self.leave = u[:, 1] < hazard


def reference_bench(n: int, seed: int = 0) -> Bench:
    ref = BareStep(n, seed)
    pool = action_pool(n, K, SLATE, seed + 1, pool_size(n))
    return Bench(lambda i: ref.step(pool[i % len(pool)]))


# -------------------------------------------------------------------------- single env
class SingleBench(Bench):
    """`RecoEnv` (Retention, K = 10, slates of 2) under random actions; a finished episode is
    reset inside the timed step, so resets count against the rate."""

    def __init__(self, seed: int = 0) -> None:
        self.env = RecoEnv(users="retention", multi_session=True, num_candidates=10, slate_size=2)
        self.env.reset(seed=seed)
        self.pool = list(action_pool(4096, 10, 2, seed + 1, 1)[0])
        self.resets = 0
        super().__init__(self._step, warmup=20)

    def _step(self, i: int) -> None:
        _, _, term, trunc, _ = self.env.step(self.pool[i % len(self.pool)])
        if term or trunc:
            self.env.reset()
            self.resets += 1


# ------------------------------------------------------------------------------ memory
def state_bytes(n: int, chunk: int = MEMORY_CHUNK) -> tuple[int, float]:
    """Bytes of the Retention user state of ``n`` users (sampled in chunks and summed) and the
    seconds sampling took."""
    world = World(EnvConfig(users="retention"))
    total, t0 = 0, time.perf_counter()
    for lo in range(0, n, chunk):
        ids = np.arange(lo, min(lo + chunk, n))
        total += world.sample_users(recoworld.rng.user_keys(0, ids), ids).nbytes()
    return total, time.perf_counter() - t0


# -------------------------------------------------------------------------------- main
def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: sizes 1 and 64, 1 s each, memory of 10,000 users scaled",
    )
    ap.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="timed seconds per measurement, split over rounds (default 2, or 1 with --quick)",
    )
    args = ap.parse_args()
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 2.0)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    mem_users = 10_000 if args.quick else MEMORY_USERS

    print(
        f"recoworld throughput ({'quick' if args.quick else 'full'}): numpy {np.__version__}, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, >= {seconds:g} s per "
        "measurement"
    )
    print(
        f"RecoVectorEnv: retention, multi_session, horizon {HORIZON} d, {N_ITEMS:,} items, "
        f"K={K}, slate {SLATE}, dim {DIM}; random actions (pre-drawn)"
    )
    print(
        "reference: bare numpy step (gather K embeddings, score, MNL over slate + no-click, "
        "drift, leave)"
    )
    print()
    head = (
        f"{'users':>7} | {'env user-steps/s':>16} {'ms/step':>8} {'steps':>6} "
        f"{'done%':>6} | {'ref user-steps/s':>16} {'ms/step':>8} {'steps':>6} | "
        f"{'env/ref':>7}"
    )
    print(head)
    print("-" * len(head))
    ratios: dict[int, float] = {}
    for n in sizes:
        env, ref = VectorBench(n), reference_bench(n)
        interleaved([ref, env], seconds, ROUNDS)
        ratios[n] = env.rate / ref.rate
        done = env.ended / (n * env.done)
        print(
            f"{n:>7,} | {fmt_rate(n * env.rate):>16} {1e3 / env.rate:>8.2f} {env.steps:>6} "
            f"{100 * done:>5.1f}% | {fmt_rate(n * ref.rate):>16} {1e3 / ref.rate:>8.2f} "
            f"{ref.steps:>6} | {ratios[n]:>7.3f}",
            flush=True,
        )
        env.env.close()
        del env, ref
    print(
        f"(rates: best of {ROUNDS} interleaved rounds; steps: batched steps timed in all; "
        "done%: share of user-steps that ended an episode, each slot's next step being its "
        "autoreset)"
    )
    print()

    single = SingleBench()
    interleaved([single], seconds, ROUNDS)
    print(
        f"{'RecoEnv (retention, K=10, slate 2)':<36} {fmt_rate(single.rate):>10} steps/s "
        f"({single.steps:,} steps timed, {single.resets} resets among them)"
    )
    single.env.close()

    nbytes, mem_s = state_bytes(mem_users)
    scaled = nbytes * MEMORY_USERS / mem_users
    gib = scaled / (1 << 30)
    how = "measured" if mem_users == MEMORY_USERS else f"scaled from {mem_users:,}"
    print(
        f"{'user state, 1,000,000 users':<36} {gib:>10.3f} GiB "
        f"({scaled / MEMORY_USERS:,.0f} B/user, {how}; sampled in {mem_s:.1f} s)"
    )
    print()

    print("targets:")
    for n in TARGET_SIZES:
        if n in ratios:
            ok = ratios[n] >= TARGET_RATIO
            print(
                f"  {'PASS' if ok else 'MISS'}  env >= {TARGET_RATIO} x reference at "
                f"{n:,} users: {ratios[n]:.3f}"
            )
        else:
            print(
                f"  SKIP  env >= {TARGET_RATIO} x reference at {n:,} users (not run; drop --quick)"
            )
    ok = single.rate >= TARGET_SINGLE
    print(
        f"  {'PASS' if ok else 'MISS'}  single env >= {TARGET_SINGLE:,.0f} steps/s: "
        f"{fmt_rate(single.rate)}"
    )
    ok = scaled <= MEMORY_LIMIT
    print(f"  {'PASS' if ok else 'MISS'}  user state of 1M users <= 1 GiB: {gib:.3f} GiB")


if __name__ == "__main__":
    main()
