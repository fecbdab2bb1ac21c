"""`evaluate`: several recommenders on the same env and the same users, with confidence intervals.

Each seed ``s`` is one replication: a vector env of ``n_users`` slots is reset with env seeds
``s * n_users + i`` (so different seeds are disjoint users, and seeds ``0..S-1`` together are
the users of env seeds ``0..S * n_users - 1``), every recommender meets exactly these users
under common random numbers (the users' own random streams), and every slot plays
``episodes_per_user`` episodes. Differences between recommenders therefore come from the
recommendations alone. Per episode it records return, session length, clicks per step, watch
time per session, next-day return rate, novelty, intra-list diversity and the instructions
users gave (the RecoWorld "user instructs" signal, from ``info``); coverage is measured
per seed (all the users of a seed together). Means and 95% confidence intervals come from
`recoworld.metrics.mean_ci` over episodes (coverage: over seeds).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recoworld import metrics
from recoworld.agents.base import Recommender, make_recommender
from recoworld.errors import ConfigError, MissingExtraError, require

Progress = Callable[[int, int, str], None]

# name -> (meaning, format); the order is the table's.
METRICS: dict[str, tuple[str, str]] = {
    "return": ("sum of the env's rewards per episode", "{:.2f}"),
    "session_length": ("steps per session", "{:.2f}"),
    "clicks_per_step": ("clicks per step (slate)", "{:.3f}"),
    "watch_time_per_session": ("watch time per session, in median item lengths", "{:.2f}"),
    "next_day_return": ("share of session ends followed by a session the next day", "{:.3f}"),
    "novelty": ("mean self-information of shown items vs catalog popularity (bits)", "{:.2f}"),
    "intra_list_diversity": ("mean intra-list diversity of the slates shown", "{:.3f}"),
    "instructions": ("instructions the user gave per 100 steps", "{:.2f}"),
    "coverage": ("share of the catalog shown to a seed's users", "{:.3f}"),
    # envs whose info has `followed` / `gifted` (UserAuthor-v0); absent (nan) elsewhere
    "follows": ("follows per episode (user-author envs)", "{:.2f}"),
    "gifts": ("gifts per episode (user-author envs)", "{:.3f}"),
}
PER_SEED = ("coverage",)  # metrics measured once per seed, not per episode


@dataclass
class EvaluationResult:
    """What `evaluate` measured.

    Attributes:
        summary: recommender -> metric (`METRICS`) -> ``(mean, 95% CI half-width)``.
        values: recommender -> metric -> the values the summary is computed from: one per
            episode ``(n_episodes,)`` (NaN where undefined, e.g. the next-day return of an
            episode without a session end), one per seed for coverage ``(n_seeds,)``.
        episode_keys: recommender -> ``(n_episodes,)`` int64 identity of each episode
            (``((seed index * n_users) + slot) * episodes_per_user + episode``), sorted; the same
            key is the same user under every recommender (common random numbers), which
            `difference` uses to pair episodes.
        settings: env id, users, seeds, episodes per user, step cap, env arguments, and the
            episodes not finished within the step cap (dropped) per recommender.
    """

    summary: dict[str, dict[str, tuple[float, float]]]
    values: dict[str, dict[str, np.ndarray]]
    episode_keys: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def recommenders(self) -> list[str]:
        """The recommenders' labels, in the order evaluated."""
        return list(self.summary)

    def episodes(self, recommender: str) -> int:
        """Episodes measured for ``recommender``."""
        return int(self.values[recommender]["return"].shape[0])

    def difference(self, a: str, b: str, metric: str) -> tuple[float, float]:
        """Paired difference ``a - b`` of a per-episode metric over the episodes both measured
        (the same users, thanks to common random numbers): ``(mean, 95% CI half-width)``.

        Pairing removes the between-user variance, so this interval is usually much narrower
        than the two summary intervals suggest.
        """
        for name in (a, b):
            if name not in self.summary:
                raise ConfigError(
                    f"unknown recommender {name!r}; choose one of {self.recommenders}"
                )
        if metric not in METRICS or metric in PER_SEED:
            per_episode = [m for m in METRICS if m not in PER_SEED]
            raise ConfigError(f"metric {metric!r} is not per episode; choose one of {per_episode}")
        _, ia, ib = np.intersect1d(
            self.episode_keys[a], self.episode_keys[b], assume_unique=True, return_indices=True
        )
        return metrics.mean_ci(self.values[a][metric][ia] - self.values[b][metric][ib])

    @property
    def metrics(self) -> list[str]:
        """The `METRICS` this env has (e.g. follows and gifts only where info reports them)."""
        return [
            m for m in METRICS if any(np.isfinite(self.summary[n][m][0]) for n in self.recommenders)
        ]

    def table(self, markdown: bool = False) -> str:
        """One row per metric, one column per recommender, cells ``mean ± half-width``.

        Args:
            markdown: a Markdown table instead of aligned text.
        """
        names = self.recommenders
        rows = [["metric", *names], ["episodes", *[str(self.episodes(n)) for n in names]]]
        for metric in self.metrics:
            fmt = METRICS[metric][1]
            cells = []
            for name in names:
                mean, half = self.summary[name][metric]
                cells.append(f"{fmt.format(mean)} ± {fmt.format(half)}")
            rows.append([metric, *cells])
        if markdown:
            lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
            return "\n".join(lines)
        widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
        return "\n".join(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        )

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one row per (recommender, metric): ``recommender, metric, mean,
        ci95_half_width, n`` (n = episodes, or seeds for coverage); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["recommender", "metric", "mean", "ci95_half_width", "n"])
            for name, per in self.summary.items():
                for metric in self.metrics:
                    mean, half = per[metric]
                    n = int(np.count_nonzero(~np.isnan(self.values[name][metric])))
                    out.writerow([name, metric, repr(mean), repr(half), n])
        return path

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG (Agg, no pyplot): one bar panel per metric, one bar per recommender,
        with 95% CI error bars; returns the path. Needs the ``plot`` extra (matplotlib)."""
        figure: Any = require("matplotlib.figure", "plot")
        names = self.recommenders
        fig = figure.Figure(figsize=(14, 6), layout="constrained")
        shown = self.metrics
        axes = fig.subplots(2, (len(shown) + 1) // 2).ravel()
        x = np.arange(len(names))
        colours = [f"C{i % 10}" for i in range(len(names))]
        for ax, metric in zip(axes, shown, strict=False):
            meaning = METRICS[metric][0]
            mean = np.array([self.summary[n][metric][0] for n in names])
            half = np.nan_to_num(np.array([self.summary[n][metric][1] for n in names]))
            ax.bar(x, mean, yerr=half, capsize=4, color=colours)
            ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
            ax.set_title(metric, fontsize=10)
            ax.set_ylabel(meaning, fontsize=7)
            ax.grid(axis="y", alpha=0.3)
        for ax in axes[len(shown) :]:
            ax.set_visible(False)
        s = self.settings
        fig.suptitle(
            f"{s.get('env_id', '')}: {s.get('n_users')} users x seeds {s.get('seeds')} "
            "(mean ± 95% CI)"
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        return path


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return int(value)


def _is_path(spec: Any) -> bool:
    """A saved policy is given by a path: a PathLike, or a string naming a .zip or a folder."""
    if isinstance(spec, os.PathLike):
        return True
    return isinstance(spec, str) and (spec.endswith(".zip") or "/" in spec or os.sep in spec)


def _label(spec: Any) -> str:
    if isinstance(spec, (str, os.PathLike)):
        return f"policy:{Path(spec).stem}" if _is_path(spec) else str(spec)
    return type(spec).__name__


def load_saved_policy(path: str | os.PathLike[str], env: Any) -> Recommender:
    """A saved Stable-Baselines3 model (``model.zip``, or a run folder holding one) as a
    deterministic `Recommender` for ``env``: `recoworld.agents.sb3.load_policy` (which checks
    that the spaces match) wrapped in `recoworld.agents.sb3.SB3Recommender`. Needs the ``rl``
    extra."""
    if not Path(path).exists():
        raise ConfigError(f"saved policy {str(path)!r} does not exist; give a model .zip's path")
    try:
        from recoworld.agents.sb3 import SB3Recommender, load_policy
    except ImportError as exc:
        raise MissingExtraError(
            f"cannot load the saved policy {str(path)!r}: recoworld.agents.sb3 is not "
            f"available ({exc}); install the rl extra: pip install 'recoworld[rl]'"
        ) from exc
    model = load_policy(path, env)
    if callable(getattr(model, "recommend", None)):
        return model  # type: ignore[no-any-return]
    return SB3Recommender(model)  # type: ignore[no-any-return]


def _specs(recommenders: Any) -> dict[str, Any]:
    if isinstance(recommenders, (str, os.PathLike)) or callable(
        getattr(recommenders, "recommend", None)
    ):
        recommenders = [recommenders]
    if isinstance(recommenders, Mapping):
        specs = {str(k): v for k, v in recommenders.items()}
    else:
        specs = {}
        for spec in recommenders:
            label = _label(spec)
            if label in specs:
                raise ConfigError(
                    f"recommender {label!r} is given twice; give each once, or pass a mapping "
                    "{label: recommender} to compare two of the same kind"
                )
            specs[label] = spec
    if not specs:
        raise ConfigError("recommenders is empty; give at least one, e.g. ['random']")
    return specs


def _build(spec: Any, env: Any, seed: int) -> Recommender:
    if _is_path(spec):
        return load_saved_policy(spec, env)
    if isinstance(spec, str):
        return make_recommender(spec, env, seed)
    if callable(getattr(spec, "recommend", None)):
        if callable(getattr(spec, "reset", None)):
            spec.reset(None)
        return spec
    raise ConfigError(
        f"recommender {spec!r} is neither a registered name, a saved policy path nor an object "
        "with recommend(obs, info)"
    )


def make_eval_env(env_id: str, n_users: int, **env_kwargs: Any) -> Any:
    """The native vector env of ``env_id`` with ``n_users`` slots (next-step autoreset)."""
    import gymnasium as gym

    import recoworld  # noqa: F401  (registers the ids)

    bare = env_id.split(":", 1)[-1]
    if bare not in gym.registry:
        known = sorted(k for k in gym.registry if k.startswith("recoworld/"))
        raise ConfigError(f"unknown env id {env_id!r}; choose one of {known}")
    if gym.spec(bare).vector_entry_point is None:
        raise ConfigError(f"env {env_id!r} has no native vector env; evaluate needs one")
    return gym.make_vec(
        bare,
        num_envs=n_users,
        vectorization_mode="vector_entry_point",
        autoreset_mode="next_step",
        **env_kwargs,
    )


class _Episodes:
    """Per-slot accumulators of the running episodes and the finished episodes' metrics."""

    def __init__(self, n: int, n_items: int) -> None:
        self.acc = {
            k: np.zeros(n)
            for k in (
                "ret",
                "steps",
                "clicks",
                "watch",
                "ends",
                "next_day",
                "si",
                "si_n",
                "ild",
                "instr",
                "follows",
                "gifts",
            )
        }
        self.has_pairs = False  # the env reports follows and gifts
        self.last_left = np.zeros(n, bool)
        self.shown = np.zeros(n_items, bool)
        self.done: dict[str, list[np.ndarray]] = {m: [] for m in METRICS if m not in PER_SEED}
        self.keys: list[np.ndarray] = []  # (slot, episode index) of each finished episode

    def add(
        self,
        rows: np.ndarray,
        reward: np.ndarray,
        info: dict[str, Any],
        popularity: np.ndarray,
        embeddings: np.ndarray,
        median_length: float,
    ) -> None:
        """Add one step of the slots ``rows`` (bool ``(n,)``)."""
        a = self.acc
        slate = np.asarray(info["slate_ids"])[rows]
        slate = slate[:, None] if slate.ndim == 1 else slate
        valid = slate >= 0
        left = np.asarray(info["left"])[rows]
        a["ret"][rows] += reward[rows]
        a["steps"][rows] += 1
        a["clicks"][rows] += np.asarray(info["clicks"]).reshape(rows.shape[0], -1)[rows].sum(1)
        a["watch"][rows] += np.asarray(info["watch_time"])[rows] / median_length
        a["ends"][rows] += left
        a["next_day"][rows] += np.asarray(info["return_days"])[rows] == 1
        si = metrics.self_information(slate, popularity)
        a["si"][rows] += np.nansum(si, 1)
        a["si_n"][rows] += valid.sum(1)
        ild = metrics.intra_list_diversity(embeddings[np.maximum(slate, 0)], valid)
        a["ild"][rows] += ild
        a["instr"][rows] += np.asarray(info["instruction_kind"])[rows] != 0
        if "followed" in info and "gifted" in info:
            self.has_pairs = True
            a["follows"][rows] += (
                np.asarray(info["followed"]).reshape(rows.shape[0], -1)[rows].sum(1)
            )
            a["gifts"][rows] += np.asarray(info["gifted"]).reshape(rows.shape[0], -1)[rows].sum(1)
        self.last_left[rows] = left
        self.shown[slate[valid]] = True

    def finish(self, rows: np.ndarray, episode: np.ndarray) -> None:
        """Close the episodes of slots ``rows`` (bool ``(n,)``), whose per-slot index is
        ``episode`` ``(n,)``, and zero their accumulators."""
        self.keys.append(np.stack([np.flatnonzero(rows), episode[rows]], 1))
        a = {k: v[rows] for k, v in self.acc.items()}
        # an episode cut by the step cap mid-session still counts that session
        sessions = np.maximum(a["ends"] + ~self.last_left[rows], 1)
        nan = np.full(a["ends"].shape, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {
                "return": a["ret"],
                "session_length": a["steps"] / sessions,
                "clicks_per_step": a["clicks"] / a["steps"],
                "watch_time_per_session": a["watch"] / sessions,
                "next_day_return": np.where(a["ends"] > 0, a["next_day"] / a["ends"], nan),
                "novelty": np.where(a["si_n"] > 0, a["si"] / a["si_n"], nan),
                "intra_list_diversity": a["ild"] / a["steps"],
                "instructions": 100.0 * a["instr"] / a["steps"],
                "follows": a["follows"] if self.has_pairs else nan,
                "gifts": a["gifts"] if self.has_pairs else nan,
            }
        for m, v in out.items():
            self.done[m].append(v)
        for v in self.acc.values():
            v[rows] = 0.0
        self.last_left[rows] = False


def _run_seed(
    rec: Recommender,
    env: Any,
    seed: int,
    n_users: int,
    episodes_per_user: int,
    max_steps: int | None,
) -> tuple[dict[str, np.ndarray], np.ndarray, float, int]:
    """Run ``rec`` on the users of ``seed`` until every slot finished its episodes.

    Returns:
        ``(per-episode metric arrays (n_episodes,), their keys slot * episodes_per_user +
        episode (n_episodes,), coverage, unfinished episodes dropped)``, episodes sorted by key.
    """
    catalog = env.unwrapped.catalog
    popularity, embeddings = catalog.popularity, catalog.embeddings
    median = float(catalog.median_length)
    stats = _Episodes(n_users, catalog.n_items)
    obs, info = env.reset(seed=seed * n_users)
    finished = np.zeros(n_users, np.int64)
    skip = np.zeros(n_users, bool)  # next-step autoreset: this step only starts a new user
    learns = callable(getattr(rec, "update", None))
    resets = callable(getattr(rec, "reset", None))
    steps = 0
    while (finished < episodes_per_user).any() and (max_steps is None or steps < max_steps):
        action = rec.recommend(obs, info).action
        next_obs, reward, term, trunc, next_info = env.step(action)
        steps += 1
        if learns:
            rec.update(obs, info, action, {**next_info, "reward": reward})  # type: ignore[attr-defined]
        live = ~skip & (finished < episodes_per_user)
        stats.add(live, np.asarray(reward, np.float64), next_info, popularity, embeddings, median)
        done = (np.asarray(term) | np.asarray(trunc)) & ~skip
        if (live & done).any():
            stats.finish(live & done, finished)
        finished += done
        if resets and skip.any():
            # next-step autoreset: these slots hold a new user from now on, so forget the old
            # one now (not at ``done``: the step in between still shows the old user's info)
            rec.reset(skip)  # type: ignore[attr-defined]
        skip = done
        obs, info = next_obs, next_info
    unfinished = int(np.maximum(episodes_per_user - finished, 0).sum())
    keys = np.concatenate(stats.keys) if stats.keys else np.zeros((0, 2), np.int64)
    order = np.lexsort((keys[:, 1], keys[:, 0]))  # slot, then episode: aligned across recommenders
    values = {m: np.concatenate(v)[order] if v else np.zeros(0) for m, v in stats.done.items()}
    episode_keys = keys[order, 0] * episodes_per_user + keys[order, 1]
    shown = np.flatnonzero(stats.shown)
    return values, episode_keys, metrics.coverage(shown, catalog.n_items), unfinished


def evaluate(
    recommenders: Sequence[Any] | Mapping[str, Any] | Any,
    env_id: str = "recoworld/Retention-v0",
    n_users: int = 256,
    seeds: Sequence[int] = (0, 1, 2),
    episodes_per_user: int = 1,
    max_steps: int | None = None,
    progress: Progress | None = None,
    **env_kwargs: Any,
) -> EvaluationResult:
    """Run several recommenders on the same env and the same users; mean ± 95% CI per metric.

    Args:
        recommenders: a sequence of registered names (`make_recommender`, built afresh for
            each seed with that seed), `Recommender` objects (reused across seeds: ``reset()``
            is called at each seed's start, so a learner keeps what it learnt) and paths of
            saved Stable-Baselines3 policies (``.zip``, loaded with
            `recoworld.agents.sb3.load_policy`); or a mapping label -> any of these.
        env_id: a registered recoworld id (``"recoworld:"`` prefix allowed) with a native
            vector env.
        n_users: users per seed, stepped together in one vector env.
        seeds: replications; seed ``s`` evaluates the users of env seeds ``s * n_users + i``
            (disjoint across seeds) and seeds the recommenders built by name.
        episodes_per_user: episodes each slot plays per seed (the next ones are new users).
        max_steps: cap on vector-env steps per seed and recommender; episodes unfinished at
            the cap are dropped and counted in ``settings["unfinished"]``. None runs until every
            slot finished (the env's own step cap bounds it).
        progress: called as ``progress(done, total, label)`` after each recommender and seed.
        **env_kwargs: `EnvConfig` fields overriding the env id's defaults.

    Returns:
        An `EvaluationResult`. Each step calls ``recommend(obs, info)``, then, if present,
        ``update(obs, info, action, feedback)`` with ``feedback`` the step's info plus its
        ``reward`` (rows whose step only started a new user have ``slate_ids`` -1: nothing was
        shown) and, on the step at which slots ``mask`` start a new user (the autoreset step
        after an episode's end), ``reset(mask)``.
    """
    n_users = _positive(n_users, "n_users")
    episodes_per_user = _positive(episodes_per_user, "episodes_per_user")
    if max_steps is not None:
        max_steps = _positive(max_steps, "max_steps")
    seed_list: list[Any] = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)
    if not seed_list or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seed_list
    ):
        raise ConfigError(f"seeds={seeds!r} must be a non-empty list of integers >= 0")
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"seeds={seed_list!r} repeat a seed; give each once")
    specs = _specs(recommenders)
    env = make_eval_env(env_id, n_users, **env_kwargs)
    per_ep: dict[str, dict[str, list[np.ndarray]]] = {
        label: {m: [] for m in METRICS} for label in specs
    }
    keys: dict[str, list[np.ndarray]] = {label: [] for label in specs}
    unfinished = dict.fromkeys(specs, 0)
    total, count = len(seed_list) * len(specs), 0
    try:
        for i, seed in enumerate(seed_list):
            recs = {label: _build(spec, env, int(seed)) for label, spec in specs.items()}
            for label, rec in recs.items():
                values, key, cov, lost = _run_seed(
                    rec, env, int(seed), n_users, episodes_per_user, max_steps
                )
                keys[label].append(key + i * n_users * episodes_per_user)
                for m, v in values.items():
                    per_ep[label][m].append(v)
                per_ep[label]["coverage"].append(np.array([cov]))
                unfinished[label] += lost
                count += 1
                if progress is not None:
                    progress(count, total, f"{label} seed {seed}")
    finally:
        env.close()
    values_out = {
        label: {m: np.concatenate(v) for m, v in per.items()} for label, per in per_ep.items()
    }
    summary = {
        label: {m: metrics.mean_ci(v) for m, v in per.items()} for label, per in values_out.items()
    }
    settings = {
        "env_id": env_id,
        "n_users": n_users,
        "seeds": [int(s) for s in seed_list],
        "episodes_per_user": episodes_per_user,
        "max_steps": max_steps,
        "env_kwargs": {k: repr(v) for k, v in env_kwargs.items()},
        "unfinished": unfinished,
    }
    episode_keys = {label: np.concatenate(k) for label, k in keys.items()}
    return EvaluationResult(summary, values_out, episode_keys, settings)
