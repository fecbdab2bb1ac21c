"""`simulate`: a population of users meets recommenders over calendar days.

All users start on day 0. On each day, the users whose next session falls on that day (and who
have not churned) run their session together as one batch: candidates, observation,
``recommend``, slate, respond and transition, reward, step after step, until every user in the
batch has left. A user who leaves is written back into the population with its next session
scheduled (``World.start_next``) and dropped from the batch. Every recommender meets the same
users under common random numbers (the same per-user streams), so differences between them come
from the recommendations alone.

Per day and recommender it records engagement, retention, novelty, diversity, coverage and
exposure fairness (definitions in `recoworld.metrics`), and optionally logs every step in the
log schema of `recoworld.replay.schema`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from recoworld import metrics, rng
from recoworld.agents.base import Recommender, make_recommender
from recoworld.envs.core import World
from recoworld.envs.observation import ObservationBuilder
from recoworld.envs.registry import ENV_KWARGS
from recoworld.envs.single import make_config
from recoworld.errors import ConfigError, require
from recoworld.replay.schema import TrajectoryWriter
from recoworld.users.state import UserState

Progress = Callable[[int, int, str], None]

DAILY_METRICS: dict[str, str] = {
    "active_users": "users with a session that day",
    "sessions": "sessions started that day",
    "mean_session_length": "steps per session",
    "clicks": "clicks",
    "ctr": "clicks per shown item",
    "watch_time": "watch time in median item lengths",
    "next_day_return": "share of the day's sessions followed by a session the next day",
    "retention": "share of all users active that day",
    "novelty": "mean self-information of shown items vs catalog popularity (bits)",
    "intra_list_diversity": "mean intra-list diversity of the slates shown",
    "coverage": "share of the catalog shown",
    "exposure_gini": "Gini coefficient of item exposure",
    "reward": "sum of the environment's rewards",
}

# name -> (meaning, format); the order is the table's.
SUMMARY_METRICS: dict[str, tuple[str, str]] = {
    "users": ("users simulated", "{:.0f}"),
    "sessions": ("sessions", "{:.0f}"),
    "steps": ("steps (rows logged)", "{:.0f}"),
    "mean_session_length": ("steps per session", "{:.2f}"),
    "clicks": ("clicks", "{:.0f}"),
    "ctr": ("clicks per shown item", "{:.4f}"),
    "watch_time": ("watch time in median item lengths", "{:.1f}"),
    "next_day_return": ("share of sessions followed by one the next day", "{:.3f}"),
    "mean_daily_active": ("mean share of users active per day", "{:.3f}"),
    "last_day_active": ("share of users active on the last day", "{:.3f}"),
    "churned": ("share of users churned by the end", "{:.3f}"),
    "novelty": ("mean self-information of shown items (bits)", "{:.3f}"),
    "intra_list_diversity": ("mean intra-list diversity", "{:.3f}"),
    "coverage": ("share of the catalog shown", "{:.3f}"),
    "exposure_gini": ("Gini coefficient of item exposure", "{:.3f}"),
    "reward_per_user": ("reward per user", "{:.2f}"),
}

# Rows added to the summary when the population has LLM users (name -> (meaning, format)).
LLM_METRICS: dict[str, tuple[str, str]] = {
    "llm_fallbacks": ("user turns that took the fallback decision (llm_fallback)", "{:.0f}"),
    "llm_requests": ("chat requests sent to the endpoint", "{:.0f}"),
    "llm_cache_hits": ("turns answered from the response cache", "{:.0f}"),
    "llm_repairs": ("turns that needed the repair retry", "{:.0f}"),
    "llm_prompt_tokens": ("prompt tokens", "{:.0f}"),
    "llm_completion_tokens": ("completion tokens", "{:.0f}"),
    "llm_cost": ("estimated cost (NaN: no price configured)", "{:.4f}"),
}

_LABEL = re.compile(r"[A-Za-z0-9_.-]+")
# info keys a recommender sees that are the previous step's log columns (see EnvCore.step)


@dataclass
class SimulationResult:
    """What `simulate` measured.

    Attributes:
        daily: recommender -> metric (`DAILY_METRICS`) -> ``(days,)`` float64 array (NaN where
            undefined, e.g. the CTR of a day without sessions).
        summary: recommender -> metric (`SUMMARY_METRICS`) -> float.
        settings: users, n_users, days, seed and recommenders of the run.
        out_dir: the folder written to, or None.
    """

    daily: dict[str, dict[str, np.ndarray]]
    summary: dict[str, dict[str, float]]
    settings: dict[str, Any] = field(default_factory=dict)
    out_dir: Path | None = None

    def table(self) -> str:
        """An aligned text table: one row per summary metric, one column per recommender."""
        names = list(self.summary)
        width = max(len(m) for m in SUMMARY_METRICS)
        cols = [max(10, len(n)) for n in names]
        lines = [" " * width + "".join(f"  {n:>{w}}" for n, w in zip(names, cols, strict=True))]
        for metric, (_, fmt) in {**SUMMARY_METRICS, **LLM_METRICS}.items():
            if any(metric not in self.summary[n] for n in names):
                continue  # LLM rows only for runs with LLM users
            cells = [fmt.format(self.summary[n][metric]) for n in names]
            lines.append(
                f"{metric:<{width}}"
                + "".join(f"  {c:>{w}}" for c, w in zip(cells, cols, strict=True))
            )
        return "\n".join(lines)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write settings, summary and daily metrics as JSON (NaN as null); returns the path."""
        data = {
            "settings": self.settings,
            "summary": self.summary,
            "daily": {r: {m: v.tolist() for m, v in d.items()} for r, d in self.daily.items()},
        }
        path = Path(path)
        path.write_text(json.dumps(_nan_to_none(data), indent=2) + "\n")
        return path

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG (Agg) with two panels, the retention curve and clicks per day, one line per
        recommender; returns the path."""
        figure: Any = require("matplotlib.figure", "plot")  # no pyplot: no global backend
        fig = figure.Figure(figsize=(10, 4), layout="constrained")
        axes = fig.subplots(1, 2)
        for name, daily in self.daily.items():
            days = np.arange(daily["retention"].shape[0])
            axes[0].plot(days, daily["retention"], marker="o", label=name)
            axes[1].plot(days, daily["clicks"], marker="o", label=name)
        axes[0].set(title="Retention", xlabel="day", ylabel="share of users active", ylim=(0, 1.05))
        axes[1].set(title="Engagement", xlabel="day", ylabel="clicks")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(f"{self.settings.get('users', '')} users, n={self.settings.get('n_users')}")
        path = Path(path)
        fig.savefig(path, dpi=110)
        return path


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class _DayStats:
    """Accumulates one day's steps of one recommender (arrays, no per-user loops)."""

    def __init__(self, n_sessions: int) -> None:
        self.sessions = n_sessions
        self.steps = 0
        self.next_day = 0
        self.watch = 0.0
        self.reward = 0.0
        self.clicks: list[np.ndarray] = []  # (impressions,) bool per step
        self.shown: list[np.ndarray] = []  # (impressions,) item ids per step
        self.ild: list[np.ndarray] = []  # (n,) per step
        self.llm_fallbacks = 0  # LLM user turns that took the fallback decision

    def add(self, record: dict[str, Any], ild: np.ndarray, median_length: float) -> None:
        """Add one step: ``record`` holds the log's columns, ``ild`` ``(n,)`` the slates'
        intra-list diversity."""
        slate = record["slate_ids"]
        valid = slate >= 0
        self.steps += slate.shape[0]
        self.clicks.append(record["clicks"][valid])
        self.shown.append(slate[valid])
        self.watch += float(record["watch_time"].sum()) / median_length
        self.reward += float(record["reward"].sum())
        self.next_day += int((record["return_days"] == 1).sum())
        self.ild.append(ild)

    def finish(self, popularity: np.ndarray, n_items: int) -> tuple[dict[str, float], np.ndarray]:
        """The day's metrics and its ``(n_items,)`` exposure counts."""
        clicks = np.concatenate(self.clicks) if self.clicks else np.zeros(0, bool)
        shown = np.concatenate(self.shown) if self.shown else np.zeros(0, np.int64)
        ild = np.concatenate(self.ild) if self.ild else np.zeros(0)
        exposure = metrics.exposure_counts(shown, n_items)
        nan = float("nan")
        out = {
            "active_users": float(self.sessions),
            "sessions": float(self.sessions),
            "mean_session_length": self.steps / self.sessions if self.sessions else nan,
            "clicks": float(clicks.sum()),
            "ctr": metrics.ctr(clicks) if clicks.size else nan,
            "watch_time": self.watch,
            "next_day_return": self.next_day / self.sessions if self.sessions else nan,
            "novelty": metrics.novelty(shown, popularity) if shown.size else nan,
            "intra_list_diversity": float(ild.mean()) if ild.size else nan,
            "coverage": metrics.coverage(shown, n_items),
            "exposure_gini": metrics.gini(exposure),
            "reward": self.reward,
            "_impressions": float(shown.size),
            "_slates": float(self.steps),
            "_llm_fallbacks": float(self.llm_fallbacks),
        }
        return out, exposure


class _Runner:
    """Runs one day's sessions of one recommender over a `World` (batched)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.config = world.config
        self.obs = ObservationBuilder(world.catalog, world.k, self.config.horizon_days)
        self.median = world.catalog.median_length
        self.cap = self.config.max_episode_steps or np.iinfo(np.int32).max

    def run_day(
        self,
        rec: Recommender,
        label: str,
        state: UserState,
        rows: np.ndarray,
        dt_days: np.ndarray,
        writer: TrajectoryWriter | None,
    ) -> _DayStats:
        """Run the sessions of users ``rows`` (indices into ``state``) until all have left.

        Args:
            rec: the recommender; label: its name in the log.
            state: the whole population, updated in place when users leave.
            rows: ``(m,)`` users with a session today; dt_days: ``(m,)`` days since their
                previous session (0 for a first session).
            writer: where to log each step, or None.
        """
        world, embeddings = self.world, self.world.catalog.embeddings
        stats = _DayStats(rows.size)
        sub = state.take(rows)
        info = world.start_info(sub, world.candidates(sub))
        info["dt_days"] = dt_days.astype(np.int64)
        if hasattr(rec, "reset"):
            rec.reset()
        while rows.size:
            cand = world.candidates(sub)
            info["candidate_ids"] = cand
            obs = self.obs.build(sub, cand)
            out = rec.recommend(obs, info)
            slate, repeats = world.slate(out.action, cand)
            step = sub.step.copy()
            res = world.advance(sub, slate)
            fb = res.feedback
            record = {
                **world.record(sub, res),
                "step": step,
                "candidate_ids": cand,
                "propensity": out.propensity,
                **_trace_columns(out.extras),
            }
            fallback = record.pop("llm_fallback", None)  # LLM users' flag: counted, not logged
            if fallback is not None:
                stats.llm_fallbacks += int(np.count_nonzero(fallback))
            next_info = {**record, "dt_days": np.zeros(sub.n, np.int64), "repeats": repeats}
            if hasattr(rec, "update"):
                rec.update(obs, info, out.action, next_info)
            ild = metrics.intra_list_diversity(embeddings[np.maximum(slate, 0)], slate >= 0)
            stats.add(record, ild, self.median)
            if writer is not None:
                writer.append({"recommender": label, **record})
            info = next_info
            # The step cap is a safety net: an overlong session ends and resumes the next day.
            done = fb.leave | (sub.step >= self.cap)
            if done.any():
                end = np.flatnonzero(done)
                nxt = end[~res.churned[end]]
                world.start_next(sub, nxt, np.where(fb.leave[nxt], res.gap[nxt], 1))
                state.put(rows[end], sub.take(end))
                keep = np.flatnonzero(~done)
                sub, rows = sub.take(keep), rows[keep]
                info = {k: v[keep] for k, v in info.items()}
                if hasattr(rec, "select"):
                    rec.select(keep)
        return stats


# Recommendation.extras keys that become the log's optional columns (replay.schema)
TRACE_COLUMNS: dict[str, str] = {
    "rationale": "rec_rationale",
    "tool_calls": "rec_tool_calls",
    "llm_fallback": "rec_fallback",
    "repaired": "rec_repaired",
}


def _trace_columns(extras: Mapping[str, Any]) -> dict[str, Any]:
    """The optional log columns of a recommender that explains itself (an LLM recommender's
    rationale and tool calls); none for the others."""
    if "rationale" not in extras:
        return {}
    return {col: extras[key] for key, col in TRACE_COLUMNS.items() if key in extras}


def _recommenders(
    recommenders: Sequence[str] | Mapping[str, Recommender], world: World, seed: int
) -> dict[str, Recommender]:
    if isinstance(recommenders, str):
        recommenders = (recommenders,)
    if isinstance(recommenders, Mapping):
        out = dict(recommenders)
    else:
        names = list(recommenders)
        if len(set(names)) != len(names):
            raise ConfigError(f"recommenders {names} repeat a name; give each one once")
        env_like = SimpleNamespace(
            single_action_space=world.action_space,
            action_space=world.action_space,
            unwrapped=SimpleNamespace(catalog=world.catalog, config=world.config),
        )
        out = {name: make_recommender(name, env_like, seed) for name in names}
    if not out:
        raise ConfigError("recommenders is empty; give at least one, e.g. ('random',)")
    for label in out:
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise ConfigError(
                f"recommender label {label!r} must be letters, digits, '_', '.' "
                "or '-' (it names a folder of the log)"
            )
    return out


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return int(value)


def simulate(
    users: Any = "retention",
    recommenders: Sequence[str] | Mapping[str, Recommender] = ("random", "popularity"),
    n_users: int = 3000,
    days: int = 14,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    write_trajectories: bool = True,
    progress: Progress | None = None,
    **env_kwargs: Any,
) -> SimulationResult:
    """Simulate ``n_users`` users over ``days`` calendar days under each recommender.

    Args:
        users: a preset name (``"engagement"``, ``"novelty_seeking"``, ``"retention"``), a
            `ParametricUser` or a `Population`.
        recommenders: names for `make_recommender`, or a mapping label -> `Recommender`. A
            recommender's optional ``reset()`` is called at the start of each day's batch,
            ``select(keep)`` when users leave the batch and ``update(obs, info, action,
            feedback)`` after each step.
        n_users: population size; user ``u`` has id ``u`` and key ``user_keys(seed, u)``.
        days: days simulated (also the observation's horizon unless ``horizon_days`` is given).
        seed: run seed (users' streams and the recommenders' generators).
        out_dir: where to write ``trajectories/<recommender>/part-XXXX.parquet`` (one part per
            day), ``summary.json`` and ``simulation.png`` (when matplotlib is installed); None
            writes nothing.
        write_trajectories: False skips the Parquet log.
        progress: called as ``progress(done, total, label)`` after each day of each
            recommender (``total = days * len(recommenders)``).
        **env_kwargs: `EnvConfig` fields overriding the ``recoworld/Retention-v0`` defaults.

    Returns:
        A `SimulationResult`.
    """
    n_users, days = _positive(n_users, "n_users"), _positive(days, "days")
    config = make_config(
        {
            **ENV_KWARGS["recoworld/Retention-v0"],
            "horizon_days": days,
            **env_kwargs,
            "users": users,
            "multi_session": True,
        }
    )
    world = World(config)
    recs = _recommenders(recommenders, world, seed)
    runner = _Runner(world)
    ids = np.arange(n_users, dtype=np.int64)
    keys = rng.user_keys(seed, ids)
    out = Path(out_dir) if out_dir is not None else None
    daily: dict[str, dict[str, np.ndarray]] = {}
    summary: dict[str, dict[str, float]] = {}
    total, done = days * len(recs), 0
    for label, rec in recs.items():
        state = world.sample_users(keys, ids)  # the same users for every recommender
        usage_before = _llm_usage(world)
        last_day = np.zeros(n_users, np.int64)
        per_day: list[dict[str, float]] = []
        active_ids, active_days = [], []
        exposure = np.zeros(world.catalog.n_items)
        writer = (
            TrajectoryWriter(out / "trajectories" / label)
            if out is not None and write_trajectories
            else None
        )
        for d in range(days):
            rows = np.flatnonzero(~state.churned & (state.day == d))
            active_ids.append(rows)
            active_days.append(np.full(rows.size, d))
            stats = runner.run_day(rec, label, state, rows, d - last_day[rows], writer)
            last_day[rows] = d
            day_metrics, day_exposure = stats.finish(
                world.catalog.popularity, world.catalog.n_items
            )
            per_day.append(day_metrics)
            exposure += day_exposure
            if writer is not None:
                writer.flush()
            done += 1
            if progress is not None:
                progress(done, total, f"{label} day {d + 1}/{days}")
        curve = metrics.retention_curve(
            np.concatenate(active_ids), np.concatenate(active_days), n_users, days
        )
        daily[label] = {
            m: np.array([r.get(m, np.nan) for r in per_day], np.float64) for m in DAILY_METRICS
        }
        daily[label]["retention"] = curve
        summary[label] = _summarise(per_day, curve, exposure, state, n_users)
        if world.population.has_llm:
            summary[label].update(_llm_summary(per_day, usage_before, _llm_usage(world)))
        # running totals of recommenders that keep counters (LLM fallbacks, repairs, tokens)
        counters = getattr(rec, "counters", None)
        if isinstance(counters, dict):
            summary[label].update({f"rec_{k}": float(v) for k, v in counters.items()})
    result = SimulationResult(
        daily,
        summary,
        {
            "users": users if isinstance(users, str) else type(users).__name__,
            "n_users": n_users,
            "days": days,
            "seed": seed,
            "recommenders": list(recs),
        },
        out,
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        result.to_json(out / "summary.json")
        try:
            result.plot(out / "simulation.png")
        except ImportError:  # matplotlib is the optional "plot" extra
            pass
    return result


def _llm_usage(world: World) -> dict[str, float]:
    """The LLM users' endpoint usage so far (empty without LLM users)."""
    if not world.population.has_llm:
        return {}
    from recoworld.users.llm import usage_of

    usage = usage_of(world.users)
    out = {} if usage is None else dict(usage.as_dict())
    return {k: float("nan") if v is None else float(v) for k, v in out.items()}


def _llm_summary(
    rows: list[dict[str, float]], before: dict[str, float], after: dict[str, float]
) -> dict[str, float]:
    """Fallbacks and the endpoint usage of one recommender's run (differences of totals)."""

    def spent(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    return {
        "llm_fallbacks": float(sum(r["_llm_fallbacks"] for r in rows)),
        "llm_requests": spent("requests"),
        "llm_cache_hits": spent("cache_hits"),
        "llm_repairs": spent("repairs"),
        "llm_prompt_tokens": spent("prompt_tokens"),
        "llm_completion_tokens": spent("completion_tokens"),
        "llm_cost": spent("cost"),
    }


def _summarise(
    rows: list[dict[str, float]],
    curve: np.ndarray,
    exposure: np.ndarray,
    state: UserState,
    n_users: int,
) -> dict[str, float]:
    """Totals and means over the days of one recommender."""

    def total(m: str) -> float:
        return float(np.nansum([r[m] for r in rows]))

    def weighted(m: str, weight: str) -> float:
        w = np.array([r[weight] for r in rows])
        v = np.nan_to_num(np.array([r[m] for r in rows]))
        return float((v * w).sum() / w.sum()) if w.sum() else float("nan")

    sessions, steps = total("sessions"), total("_slates")
    return {
        "users": float(n_users),
        "sessions": sessions,
        "steps": steps,
        "mean_session_length": steps / sessions if sessions else float("nan"),
        "clicks": total("clicks"),
        "ctr": weighted("ctr", "_impressions"),
        "watch_time": total("watch_time"),
        "next_day_return": weighted("next_day_return", "sessions"),
        "mean_daily_active": float(curve.mean()),
        "last_day_active": float(curve[-1]),
        "churned": float(state.churned.mean()),
        "novelty": weighted("novelty", "_impressions"),
        "intra_list_diversity": weighted("intra_list_diversity", "_slates"),
        "coverage": metrics.coverage(np.flatnonzero(exposure), exposure.size),
        "exposure_gini": metrics.gini(exposure),
        "reward_per_user": total("reward") / n_users,
    }
