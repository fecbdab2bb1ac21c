"""Off-policy evaluation on logs, and its validation against the simulator's ground truth.

A target policy is evaluated off-policy only if it can say how likely it was to take the logged
action: policies here follow `StochasticPolicy`, ``probabilities(obs, info) -> (n, K)``, a
distribution over each user's K candidates; slates of L items are drawn from it item by item
without replacement (Plackett-Luce), so the probability of any logged slate, slot by slot, is
known exactly (conditionals) or by an unbiased Monte Carlo average (marginals, L > 2). See
`recoworld.replay.ope` for the estimators and their propensity conventions.

`evaluate_log` evaluates targets on a log. The log holds what a recommender saw through
``info`` (the candidate ids, user, session, day, step) but no observation, so only targets that
decide from ``info`` and the catalog can be evaluated from a log: they receive ``obs=None``.
`UniformPolicy` and `SoftmaxPolicy` (softmax over a catalog column) are such targets.

`validate_ope` checks the estimators against ground truth. A log does not hold the
observations a target's probabilities depend on, so instead of writing a log and reading it
back, the logging is re-run in-process: the batched simulator core runs the logging policy and,
at every step, records the logged slate's rewards, the logging propensities and the target's
probabilities on the very observation the logging policy saw. The target's *on-policy* value is
then measured by running it in the same simulator on the same users (same per-user random
streams). With ``steps=1`` (each user's first step: a context no policy has influenced) the
on-policy value is exactly the estimand of every per-step estimator, so the CI should cover it.
With more steps a target changes the states it visits, so the report also gives the target's
value on the *logged* contexts (its reward drawn from the user model's pure ``respond`` on the
logged states, averaged over ``truth_draws`` draws), which is what per-step estimators estimate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recoworld import rng as streams
from recoworld.catalog import Catalog
from recoworld.errors import ConfigError, ReplayDataError, require
from recoworld.replay.ope import (
    IPS,
    SNIPS,
    ClippedIPS,
    DoublyRobust,
    IndependentIPS,
    OffPolicyEstimator,
    PseudoInverse,
    RewardInteractionIPS,
    SlateIPS,
    bootstrap_ratios,
    plackett_luce_conditionals,
    plackett_luce_marginals,
    plackett_luce_sample,
)
from recoworld.replay.target_policies import (  # re-exported: part of this module's API
    SoftmaxPolicy as SoftmaxPolicy,
)
from recoworld.replay.target_policies import (
    StochasticPolicy as StochasticPolicy,
)
from recoworld.replay.target_policies import (
    UniformPolicy as UniformPolicy,
)
from recoworld.replay.target_policies import (
    _check_slate_size,
)
from recoworld.types import Feedback

Progress = Callable[[int, int, str], None]
CHUNK_ROWS = 100_000  # log rows whose (n, K) target probabilities are held at once


# ------------------------------------------------------------- estimator inputs
def default_estimators(slate_size: int) -> dict[str, OffPolicyEstimator]:
    """The estimators reported by default: single-item ones at L = 1, slate ones otherwise."""
    if slate_size == 1:
        return {
            "IPS": IPS(),
            "ClippedIPS(5)": ClippedIPS(max_weight=5.0),
            "SNIPS": SNIPS(),
            "DR": DoublyRobust(),
        }
    return {
        "IIPS": IndependentIPS(),
        "RIPS": RewardInteractionIPS(),
        "SlateIPS": SlateIPS(),
        "PI": PseudoInverse(),
    }


@dataclass
class _Batch:
    """One chunk of logged rows with the target's probabilities (arrays over rows).

    rewards ``(n, L)``; action ``(n, L)`` candidate indices; candidate_ids ``(n, K)``;
    logging_conditional ``(n, L)``; logging_marginal ``(n, L)`` or None when unknown;
    target_probabilities ``(n, K)``; groups ``(n,)``.
    """

    rewards: np.ndarray
    action: np.ndarray
    candidate_ids: np.ndarray
    logging_conditional: np.ndarray
    logging_marginal: np.ndarray | None
    target_probabilities: np.ndarray
    groups: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def arguments(
        self, est: OffPolicyEstimator, rng: np.random.Generator, predict: Any
    ) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]] | str:
        """``(args, kwargs)`` for ``est.terms``, or the reason it cannot run on this log."""
        n_slots = self.action.shape[1]
        if not est.slate and n_slots > 1:
            return f"single-item estimator; the log shows slates of {n_slots}"
        pi = self.target_probabilities
        if est.propensities == "marginal" and n_slots > 1:
            if self.logging_marginal is None:
                return "needs the logger's marginal propensities (known for a uniform logger)"
            if "q" not in self.extra:
                self.extra["q"], self.extra["mass"] = plackett_luce_marginals(pi, self.action, rng)
            p0, pe = self.logging_marginal, self.extra["q"]
        else:
            p0 = self.logging_conditional
            pe = plackett_luce_conditionals(pi, self.action)
        kwargs: dict[str, np.ndarray] = {}
        for name in est.needs:
            if name == "target_probabilities":
                kwargs[name] = pi
            elif name == "action":
                kwargs[name] = self.action[:, 0]
            elif name == "reward_predictions":
                kwargs[name] = predict(self.candidate_ids)
            elif name == "target_item_mass":
                kwargs[name] = self.extra["mass"] if n_slots > 1 else pe
            else:
                return f"needs {name!r}, which a log does not provide"
        r = self.rewards if est.slate else self.rewards[:, 0]
        if not est.slate:
            p0, pe = p0[:, 0], pe[:, 0]
        return (r, p0, pe), kwargs


@dataclass(frozen=True)
class EstimateRow:
    """One estimator's result: ``estimate`` in ``[low, high]`` (NaN with a ``note`` when the
    estimator cannot run on this log)."""

    target: str
    estimator: str
    estimate: float
    low: float
    high: float
    note: str = ""


class _Accumulator:
    """Per-row terms of every (target, estimator), gathered chunk by chunk."""

    def __init__(self) -> None:
        self.num: dict[tuple[str, str], list[np.ndarray]] = {}
        self.den: dict[tuple[str, str], list[np.ndarray]] = {}
        self.groups: list[np.ndarray] = []
        self.notes: dict[tuple[str, str], str] = {}

    def add(
        self,
        batch: _Batch,
        target: str,
        estimators: Mapping[str, OffPolicyEstimator],
        rng: np.random.Generator,
        predictors: Mapping[str, Any],
    ) -> None:
        for name, est in estimators.items():
            key = (target, name)
            if key in self.notes:
                continue
            got = batch.arguments(est, rng, predictors.get(name))
            if isinstance(got, str):
                self.notes[key] = got
                continue
            num, den = est.terms(*got[0], **got[1])
            self.num.setdefault(key, []).append(num)
            self.den.setdefault(key, []).append(den)

    def rows(self, n_bootstrap: int, alpha: float, seed: int | None) -> list[EstimateRow]:
        groups = np.concatenate(self.groups)
        _, inverse = np.unique(groups, return_inverse=True)
        out = []
        keys = list(dict.fromkeys([*self.num, *self.notes]))
        for target, name in keys:
            if (target, name) in self.notes:
                nan = float("nan")
                out.append(EstimateRow(target, name, nan, nan, nan, self.notes[(target, name)]))
                continue
            num = np.concatenate(self.num[(target, name)])
            den = np.concatenate(self.den[(target, name)])
            value = float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")
            gnum, gden = np.bincount(inverse, num), np.bincount(inverse, den)
            reps = bootstrap_ratios(gnum, gden, n_bootstrap, np.random.default_rng(seed))
            low, high = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2])
            out.append(EstimateRow(target, name, value, float(low), float(high)))
        return out


def format_rows(rows: Sequence[EstimateRow], alpha: float) -> str:
    """An aligned text table of estimates with their ``1 - alpha`` intervals."""
    level = f"{100 * (1 - alpha):g}% CI"
    head = ("target", "estimator", "estimate", level, "note")
    body = [
        (
            r.target,
            r.estimator,
            f"{r.estimate:.4f}",
            f"[{r.low:.4f}, {r.high:.4f}]" if math.isfinite(r.low) else "",
            r.note,
        )
        for r in rows
    ]
    width = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head))]
    lines = [
        "  ".join(f"{c:<{w}}" for c, w in zip(row, width, strict=True)).rstrip()
        for row in (head, *body)
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


# ------------------------------------------------------------------ from a log
def as_sessions(log: Any) -> Any:
    """A `recoworld.replay.loaders.Sessions` from a path, a DataFrame (as `read_trajectories`
    returns) or a `Sessions` (returned unchanged)."""
    from recoworld.replay import loaders

    if isinstance(log, loaders.Sessions):
        return log
    if isinstance(log, (str, os.PathLike)):
        return loaders.load_sessions(log)
    pa: Any = require("pyarrow", "data")
    if hasattr(log, "columns"):
        return loaders.Sessions.from_table(pa.Table.from_pandas(log, preserve_index=False))
    raise ReplayDataError(
        f"cannot read a log from {type(log).__name__}; give a path, a pandas DataFrame in the "
        "log schema or a recoworld.replay.loaders.Sessions"
    )


def slate_indices(candidate_ids: np.ndarray, slate_ids: np.ndarray) -> np.ndarray:
    """``(n, L)`` index of each shown item among its row's candidates.

    Raises:
        ReplayDataError: a slot shows no item (-1, a repeat shown once) or an item that is not
            among the row's candidates: off-policy evaluation needs every slot's action.
    """
    match = slate_ids[:, :, None] == candidate_ids[:, None, :]
    found = match.any(2)
    if not found.all():
        row, slot = (int(i) for i in np.argwhere(~found)[0])
        raise ReplayDataError(
            f"log row {row}, column 'slate_ids', slot {slot} holds {int(slate_ids[row, slot])}, "
            "which is not one of the row's 'candidate_ids' (a -1 marks a repeat shown once); "
            "off-policy evaluation needs every shown slot's candidate index"
        )
    return match.argmax(2).astype(np.int64)


def uniform_logging_marginals(propensity: np.ndarray, n_candidates: int) -> np.ndarray | None:
    """``(n, L)`` marginals ``1 / K`` when the logged conditionals are those of a uniform
    logger (``1 / (K - j)`` at slot j); None when they are not (or, at L = 1, the
    conditionals themselves)."""
    if propensity.shape[1] == 1:
        return propensity.astype(np.float64)
    want = 1.0 / (n_candidates - np.arange(propensity.shape[1]))
    if np.allclose(propensity, want[None, :], rtol=1e-4, atol=0):
        return np.full(propensity.shape, 1.0 / n_candidates)
    return None


def evaluate_log(
    log: Any,
    targets: Mapping[str, StochasticPolicy],
    *,
    estimators: Mapping[str, OffPolicyEstimator] | None = None,
    reward: str = "clicks",
    recommender: str | None = None,
    n_bootstrap: int = 500,
    alpha: float = 0.05,
    seed: int | None = 0,
    progress: Progress | None = None,
) -> list[EstimateRow]:
    """Estimate each target's mean reward per logged step from a log.

    Args:
        log: a path, DataFrame or `Sessions` in the log schema, with real propensities.
        targets: name -> `StochasticPolicy` deciding from ``info`` (it gets ``obs=None``;
            ``info`` holds the log's candidate_ids, user_id, session, day and step).
        estimators: name -> estimator; default `default_estimators` for the log's slate size.
        reward: ``"clicks"`` (per slot) or ``"reward"`` (the logged step reward; slate size 1
            only, since it cannot be split over slots).
        recommender: evaluate only the rows logged by this recommender (required when the
            log holds several).
        n_bootstrap, alpha, seed: the bootstrap over sessions (see
            `OffPolicyEstimator.estimate_ci`).
        progress: ``progress(done, total, label)`` after each chunk of each target.

    Returns:
        One `EstimateRow` per target and estimator, preceded by the logging policy's own mean
        reward (``target="logged"``, ``estimator="on-policy"``).
    """
    s = as_sessions(log)
    if recommender is not None:
        s = s.take(np.flatnonzero(s.recommender == recommender))
    if s.n_steps == 0:
        raise ReplayDataError("the log has no rows to evaluate on")
    names = sorted(set(s.recommender.tolist()))
    if len(names) > 1:
        raise ReplayDataError(
            f"the log mixes the logging recommenders {names}; evaluate one at a time "
            "(recommender=... / --recommender NAME)"
        )
    if not s.propensity_known:
        raise ReplayDataError(
            "the log has no 'propensity' column (its propensities were defaulted to 1.0); "
            "off-policy evaluation needs the logging policy's propensities"
        )
    if not np.isfinite(s.propensity).all() or (s.candidate_ids < 0).any():
        raise ReplayDataError(
            "the log mixes slates or candidate sets of different sizes; evaluate one "
            "recommender's rows at a time (recommender=...)"
        )
    if np.all(s.propensity == 1.0):
        raise ReplayDataError(
            f"the logging policy {names[0]!r} is deterministic (propensity 1.0 in every row): "
            "it never tried other slates, so no other policy can be evaluated off-policy on it"
        )
    n, k = s.candidate_ids.shape
    n_slots = s.slate_ids.shape[1]
    if reward == "clicks":
        rewards = s.clicks.astype(np.float64)
    elif reward == "reward":
        if n_slots > 1:
            raise ConfigError(
                f"reward='reward' needs slates of one item (the log shows {n_slots}); use "
                "reward='clicks', which is per slot"
            )
        rewards = s.reward.astype(np.float64)[:, None]
    else:
        raise ConfigError(f"reward={reward!r}; choose 'clicks' or 'reward'")
    action = slate_indices(s.candidate_ids, s.slate_ids)
    cond = s.propensity.astype(np.float64)
    marg = uniform_logging_marginals(cond, k)
    bounds = s.session_bounds()
    groups = np.repeat(np.arange(bounds.size - 1), np.diff(bounds))
    estimators = dict(estimators or default_estimators(n_slots))
    chosen = s.slate_ids[:, 0].astype(np.int64)
    predictors = {
        name: est.reward_model.fit(chosen, rewards[:, 0])  # type: ignore[attr-defined]
        for name, est in estimators.items()
        if "reward_predictions" in est.needs and n_slots == 1
    }
    acc = _Accumulator()
    acc.groups.append(groups)
    gen = np.random.default_rng(seed)
    chunks = range(0, n, CHUNK_ROWS)
    total, done = len(chunks) * len(targets), 0
    for tname, target in targets.items():
        for lo in chunks:
            hi = min(lo + CHUNK_ROWS, n)
            info = {
                "candidate_ids": s.candidate_ids[lo:hi].astype(np.int64),
                "user_id": s.user_id[lo:hi],
                "session": s.session[lo:hi],
                "day": s.day[lo:hi],
                "step": s.step[lo:hi],
            }
            pi = _check_probabilities(target.probabilities(None, info), (hi - lo, k), tname)
            batch = _Batch(
                rewards[lo:hi],
                action[lo:hi],
                info["candidate_ids"],
                cond[lo:hi],
                None if marg is None else marg[lo:hi],
                pi,
                groups[lo:hi],
            )
            acc.add(batch, tname, estimators, gen, predictors)
            done += 1
            if progress is not None:
                progress(done, total, f"{tname} rows {hi}/{n}")
    logged_mean = rewards.sum(1)
    g_num = np.bincount(groups, logged_mean)
    g_den = np.bincount(groups, np.ones(n))
    reps = bootstrap_ratios(g_num, g_den, n_bootstrap, np.random.default_rng(seed))
    lo_ci, hi_ci = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2])
    first = EstimateRow("logged", "on-policy", float(logged_mean.mean()), lo_ci, hi_ci)
    return [first, *acc.rows(n_bootstrap, alpha, seed)]


def _check_probabilities(p: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.asarray(p, np.float64)
    if arr.shape != shape:
        raise ConfigError(
            f"target {name!r}: probabilities() returned shape {arr.shape}; expected {shape} "
            "(one distribution over the K candidates per row)"
        )
    ok = np.isfinite(arr).all() and (arr >= 0).all() and np.allclose(arr.sum(1), 1.0, atol=1e-6)
    if not ok:
        raise ConfigError(
            f"target {name!r}: probabilities() must return non-negative rows summing to 1"
        )
    return arr


# ------------------------------------------------------- validation in the simulator
@dataclass(frozen=True)
class OPEValidation:
    """What `validate_ope` measured.

    Attributes:
        rows: one `EstimateRow` per estimator (target ``"target"``).
        on_policy: the target's mean reward per step when it runs itself on the same users.
        on_policy_se: its standard error (over users).
        contextual: the target's mean reward on the logged contexts (the estimand of
            per-step estimators; equals ``on_policy`` in expectation when ``steps == 1``).
        contextual_se: its standard error.
        logging_value: the logging policy's mean reward per logged step.
        n_rows: logged steps.
        settings: the run's arguments.
    """

    rows: tuple[EstimateRow, ...]
    on_policy: float
    on_policy_se: float
    contextual: float
    contextual_se: float
    logging_value: float
    n_rows: int
    settings: dict[str, Any]

    @property
    def truth(self) -> float:
        """The value the CIs are judged against: the on-policy value for ``steps == 1``,
        else the value on the logged contexts."""
        return self.on_policy if self.settings.get("steps", 1) == 1 else self.contextual

    def covered(self) -> dict[str, bool]:
        """Estimator -> whether its interval covers `truth`."""
        t = self.truth
        return {r.estimator: bool(r.low <= t <= r.high) for r in self.rows}

    def table(self) -> str:
        """The estimates, their intervals, the truths and coverage as text."""
        cov = self.covered()
        lines = [format_rows(self.rows, self.settings.get("alpha", 0.05))]
        lines.append("")
        lines.append(f"on-policy value     {self.on_policy:.4f} ± {1.96 * self.on_policy_se:.4f}")
        lines.append(f"on logged contexts  {self.contextual:.4f} ± {1.96 * self.contextual_se:.4f}")
        lines.append(f"logging policy      {self.logging_value:.4f}  ({self.n_rows} rows)")
        lines.append("covered: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in cov.items()))
        return "\n".join(lines)


def _slot_rewards(fb: Feedback, median_length: float) -> np.ndarray:
    """``(n, L)`` per-slot reward: click + watch time in median item lengths (the default
    reward of the envs without a return bonus)."""
    return fb.clicks.astype(np.float64) + fb.watch_time.astype(np.float64) / median_length


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")


def validate_ope(
    target: StochasticPolicy | Callable[[Catalog], StochasticPolicy],
    *,
    logging: StochasticPolicy | Callable[[Catalog], StochasticPolicy] | None = None,
    estimators: Mapping[str, OffPolicyEstimator] | None = None,
    users: Any = "engagement",
    n_users: int = 4000,
    steps: int = 1,
    slate_size: int = 1,
    num_candidates: int = 10,
    seed: int = 0,
    n_bootstrap: int = 500,
    alpha: float = 0.05,
    truth_draws: int = 4,
    **env_kwargs: Any,
) -> OPEValidation:
    """Log a known stochastic policy in the simulator, evaluate ``target`` off-policy, and
    compare with the target's value measured by running it (see the module docstring).

    Args:
        target: a `StochasticPolicy`, or a function of the env's catalog returning one.
        logging: the logging policy (same forms); default `UniformPolicy`.
        estimators: name -> estimator; default `default_estimators(slate_size)`.
        users: a preset name, `ParametricUser` or `Population`.
        n_users: users; each contributes up to ``steps`` logged steps of its first session.
        steps: steps per user (the session may end earlier).
        slate_size, num_candidates: L and K.
        seed: run seed (users' streams; the policies' and bootstrap's generators).
        n_bootstrap, alpha: the bootstrap over users.
        truth_draws: draws of the target's reward per logged context for ``contextual``.
        **env_kwargs: further `EnvConfig` fields (e.g. ``n_items``, ``catalog``).

    Returns:
        An `OPEValidation`.
    """
    from recoworld.envs.core import World
    from recoworld.envs.observation import ObservationBuilder
    from recoworld.envs.single import make_config
    from recoworld.users.parametric import N_STEP_DRAWS

    for name, value in (("n_users", n_users), ("steps", steps), ("truth_draws", truth_draws)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    config = make_config(
        {
            "users": users,
            "num_candidates": num_candidates,
            "slate_size": _check_slate_size(slate_size),
            "multi_session": False,
            "max_episode_steps": None,
            **env_kwargs,
        }
    )
    world = World(config)
    catalog, median = world.catalog, world.catalog.median_length
    obs_builder = ObservationBuilder(catalog, world.k, 1)
    tgt = _policy(target, catalog, "target")
    log_policy = _policy(logging if logging is not None else UniformPolicy(), catalog, "logging")
    ids = np.arange(n_users, dtype=np.int64)
    keys = streams.user_keys(seed, ids)
    gen = np.random.default_rng([seed, 1])
    estimators = dict(estimators or default_estimators(slate_size))

    # 1. the logging run, recording the target's probabilities on the logged observations
    state = world.sample_users(keys, ids)
    info = world.start_info(state, world.candidates(state))
    rows = np.arange(n_users)
    batches: list[_Batch] = []
    contextual: list[np.ndarray] = []
    for _ in range(steps):
        cand = world.candidates(state)
        info["candidate_ids"] = cand
        obs = obs_builder.build(state, cand)
        p_log = _check_probabilities(log_policy.probabilities(obs, info), cand.shape, "logging")
        p_tgt = _check_probabilities(tgt.probabilities(obs, info), cand.shape, "target")
        action = plackett_luce_sample(p_log, world.slate_size, gen)
        # the target's reward on this very context: the user model's respond is pure
        truth = np.zeros(state.n)
        for _ in range(truth_draws):
            alt = plackett_luce_sample(p_tgt, world.slate_size, gen)
            alt_slate, _ = world.slate(alt, cand)
            u = gen.random((state.n, N_STEP_DRAWS))
            fb_alt = world.users.respond(state, alt_slate, catalog, u)
            truth += _slot_rewards(fb_alt, median).sum(1)
        contextual.append(truth / truth_draws)
        slate, _ = world.slate(action, cand)
        res = world.advance(state, slate)
        log_marg, _ = plackett_luce_marginals(p_log, action, gen)
        batches.append(
            _Batch(
                _slot_rewards(res.feedback, median),
                action,
                cand,
                plackett_luce_conditionals(p_log, action),
                log_marg,
                p_tgt,
                rows.copy(),
            )
        )
        info = {**world.record(state, res), "candidate_ids": cand}
        stay = np.flatnonzero(~res.feedback.leave)
        if stay.size == 0:
            break
        state, rows = state.take(stay), rows[stay]
        info = {k: v[stay] for k, v in info.items()}

    def stacked(name: str) -> np.ndarray:
        return np.concatenate([getattr(b, name) for b in batches])

    batch = _Batch(
        rewards=stacked("rewards"),
        action=stacked("action"),
        candidate_ids=stacked("candidate_ids"),
        logging_conditional=stacked("logging_conditional"),
        logging_marginal=stacked("logging_marginal"),
        target_probabilities=stacked("target_probabilities"),
        groups=stacked("groups"),
    )
    chosen = batch.candidate_ids[np.arange(batch.action.shape[0]), batch.action[:, 0]]
    predictors = {
        name: est.reward_model.fit(chosen, batch.rewards[:, 0])  # type: ignore[attr-defined]
        for name, est in estimators.items()
        if "reward_predictions" in est.needs
    }
    acc = _Accumulator()
    acc.groups.append(batch.groups)
    acc.add(batch, "target", estimators, gen, predictors)
    est_rows = acc.rows(n_bootstrap, alpha, seed)

    # 2. the target on-policy, on the same users (same streams)
    state = world.sample_users(keys, ids)
    info = world.start_info(state, world.candidates(state))
    on_rewards: list[np.ndarray] = []
    for _ in range(steps):
        cand = world.candidates(state)
        info["candidate_ids"] = cand
        obs = obs_builder.build(state, cand)
        p_tgt = _check_probabilities(tgt.probabilities(obs, info), cand.shape, "target")
        slate, _ = world.slate(plackett_luce_sample(p_tgt, world.slate_size, gen), cand)
        res = world.advance(state, slate)
        on_rewards.append(_slot_rewards(res.feedback, median).sum(1))
        info = {**world.record(state, res), "candidate_ids": cand}
        stay = np.flatnonzero(~res.feedback.leave)
        if stay.size == 0:
            break
        state = state.take(stay)
        info = {k: v[stay] for k, v in info.items()}

    on = np.concatenate(on_rewards)
    ctx = np.concatenate(contextual)
    return OPEValidation(
        rows=tuple(est_rows),
        on_policy=float(on.mean()),
        on_policy_se=_se(on),
        contextual=float(ctx.mean()),
        contextual_se=_se(ctx),
        logging_value=float(batch.rewards.sum(1).mean()),
        n_rows=int(batch.rewards.shape[0]),
        settings={
            "n_users": n_users,
            "steps": steps,
            "slate_size": slate_size,
            "num_candidates": num_candidates,
            "seed": seed,
            "alpha": alpha,
            "n_bootstrap": n_bootstrap,
        },
    )


def _policy(
    policy: StochasticPolicy | Callable[[Catalog], StochasticPolicy], catalog: Catalog, role: str
) -> StochasticPolicy:
    if isinstance(policy, StochasticPolicy):
        return policy
    if callable(policy):
        built = policy(catalog)
        if isinstance(built, StochasticPolicy):
            return built
    raise ConfigError(
        f"the {role} policy {policy!r} has no probabilities(obs, info) method; off-policy "
        "evaluation needs a StochasticPolicy (or a function of the catalog returning one)"
    )
