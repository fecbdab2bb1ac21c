"""`calibrate`: fit a parametric population and catalog to a log (see the package docstring)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recoworld import rng as streams
from recoworld.catalog import Catalog
from recoworld.errors import ConfigError, ReplayDataError
from recoworld.replay.calibration.choice import (
    MixedLogit,
    _fit_watch,
    _gap_log_likelihood,
    _logistic,
    _maximise,
)
from recoworld.replay.calibration.files import (
    _atomic_text,
    _finite_or_none,
    save_catalog,
)
from recoworld.replay.calibration.logs import LogArrays, factorise_clicks, spherical_kmeans
from recoworld.replay.calibration.replay_state import Replay, invert_popularity, replay_state
from recoworld.users.parametric import ParametricUser
from recoworld.users.params import UserParams
from recoworld.users.population import Population

Progress = Callable[[int, int, str], None]


@dataclass
class CalibrationResult:
    """What `calibrate` fitted.

    Attributes:
        population: the calibrated `Population` (one segment named ``"calibrated"``).
        catalog: the fitted `Catalog`.
        fitted: name -> value of every fitted user parameter (``tau``, ``u0``, ``alpha0``,
            ``alpha1``, ``watch_noise``, ``h0``, ``h_fatigue``, ``h_sat``, ``return_mean``,
            ``churn0``).
        env_kwargs: ``num_candidates`` and ``slate_size`` of the log, for `simulate` or the env.
        holdout_auc: click-prediction AUC on the held-out sessions (NaN without a holdout).
        log_likelihood: the choice model's log-likelihood per fitted step.
        n_rows, n_users: the log's size.
        settings: the arguments of the fit.
        user_interests: ``(n_users, dim)`` each logged user's posterior-mean interest (users
            numbered as in `LogArrays`).
    """

    population: Population
    catalog: Catalog
    fitted: dict[str, float]
    env_kwargs: dict[str, int]
    holdout_auc: float
    log_likelihood: float
    n_rows: int
    n_users: int
    settings: dict[str, Any] = field(default_factory=dict)
    user_interests: np.ndarray | None = None

    @property
    def params(self) -> UserParams:
        """The calibrated segment's `UserParams`."""
        return self.population.segments[0].params

    def simulate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make `simulate` run the calibrated world:
        ``simulate(**result.simulate_kwargs(), recommenders=..., n_users=..., days=...)``."""
        return {"users": self.population, "catalog": self.catalog, **self.env_kwargs}

    def table(self) -> str:
        """The fitted parameters beside the base preset's values."""
        base = self.settings.get("base_params", {})
        lines = [f"{'parameter':<14}{'fitted':>10}{'base':>10}"]
        for name, value in self.fitted.items():
            lines.append(f"{name:<14}{value:>10.4f}{base.get(name, float('nan')):>10.4f}")
        lines.append(f"{'holdout AUC':<14}{self.holdout_auc:>10.4f}")
        return "\n".join(lines)

    def save(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``population.json``, ``catalog.npz`` and ``calibration.json`` (the fitted values
        and settings) to ``out_dir``, each atomically. Returns name -> path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        info = {
            "fitted": self.fitted,
            "env_kwargs": self.env_kwargs,
            "holdout_auc": _finite_or_none(self.holdout_auc),
            "log_likelihood": self.log_likelihood,
            "n_rows": self.n_rows,
            "n_users": self.n_users,
            "settings": self.settings,
        }
        return {
            "population.json": _atomic_text(out / "population.json", self.population.to_json()),
            "catalog.npz": save_catalog(self.catalog, out / "catalog.npz"),
            "calibration.json": _atomic_text(
                out / "calibration.json", json.dumps(info, indent=2, default=float) + "\n"
            ),
        }


def click_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (Mann-Whitney, with
    average ranks for ties); NaN when a class is empty."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size)
    bounds = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [s.size]])
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ---------------------------------------------------------------------- calibrate
def _default_topics(n_items: int) -> int:
    return max(2, min(n_items, round(math.sqrt(n_items / 3))))


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return int(value)


def item_lengths(log: LogArrays) -> np.ndarray:
    """``(n_items,)`` each item's median ``watch_time / watch_fraction`` over its clicks (its
    length in the simulator), the median over all clicks for items never clicked."""
    hit = log.clicks.any(1) & (log.watch > 0)
    item = np.maximum(log.slate, 0)[np.arange(log.n), log.clicks.argmax(1)][hit]
    seconds = log.watch_time[hit] / log.watch[hit]
    length = np.full(log.n_items, float(np.median(seconds)) if seconds.size else 60.0)
    if seconds.size:
        order = np.argsort(item, kind="stable")
        uniq, first = np.unique(item[order], return_index=True)
        length[uniq] = [float(np.median(x)) for x in np.split(seconds[order], first[1:])]
    return np.maximum(length, 1e-3)


def _catalog(
    emb: np.ndarray,
    topic: np.ndarray,
    quality: np.ndarray,
    popularity: np.ndarray,
    length: np.ndarray,
    seed: int,
) -> Catalog:
    n, k = emb.shape[0], int(topic.max()) + 1
    return Catalog(
        embeddings=emb.astype(np.float32),
        topic=topic.astype(np.int32),
        quality=np.clip(quality, 0.0, 1.0).astype(np.float32),
        popularity=popularity,
        creator=np.zeros(n, np.int32),
        length=length.astype(np.float32),
        title=np.array([f"item {i}" for i in range(n)], dtype=object),
        text=np.array([f"calibrated item {i} (topic {t})" for i, t in enumerate(topic)], object),
        topic_names=np.array([f"topic {t}" for t in range(k)], dtype=object),
        meta={"source": "calibrated", "seed": seed},
    )


def _state_offset(rep: Replay, p: UserParams, n_slots: int) -> np.ndarray:
    """``(n, L)`` the utility terms other than affinity and quality, from the replayed state;
    the hidden session propensity enters the novelty term at its population mean."""
    nov_sign = 2.0 * float(p.novelty_a) / float(p.novelty_a + p.novelty_b) - 1.0
    return (
        float(p.beta_nov) * nov_sign * rep.novelty
        - float(p.beta_bore) * rep.boredom
        - float(p.beta_rep) * rep.repeat
        - float(p.beta_sim) * rep.slate_sim
        - float(p.beta_pos) * np.log1p(np.arange(n_slots))[None, :]
    )


def _fit_leave(log: LogArrays, rep: Replay, p: UserParams, rows: np.ndarray) -> list[float]:
    """``[h0, h_fatigue, h_sat]``: the discrete-time hazard of leaving after each step."""
    design = np.stack(
        [
            np.ones(int(rows.sum())),
            (log.step[rows] + 1) / float(p.fatigue_scale),
            -rep.satisfaction[rows],
        ],
        1,
    )
    return [float(x) for x in _logistic(design, log.left[rows])]


def _fit_returns(log: LogArrays, rep: Replay, p: UserParams, rows: np.ndarray) -> list[float]:
    """``[return_mean, churn0]`` by maximum likelihood of the logged session ends."""
    ends = log.left & rows & (log.churned | (log.return_days >= 1))
    if not ends.any():
        raise ReplayDataError(
            "the log has no session ends with a return gap or churn ('left', 'return_days', "
            "'churned'); calibration needs multi-session logs"
        )
    s, z = rep.satisfaction[ends], rep.staleness[ends]
    gap, churned, user = log.return_days[ends], log.churned[ends], log.user[ends]
    x = _maximise(
        lambda x: _gap_log_likelihood(x, s, z, gap, churned, user, p),
        np.array([math.log(float(p.return_mean)), float(p.churn0)]),
        low=np.array([math.log(1.0 + 1e-6), -30.0]),  # return_mean > 1 day; churn draws >= 0
        high=np.array([math.log(1e3), 10.0]),
    )
    return [float(math.exp(x[0])), float(x[1])]


def calibrate(
    log: Any,
    n_items: int | None = None,
    dim: int = 16,
    *,
    n_topics: int | None = None,
    base: ParametricUser | None = None,
    holdout: float = 0.2,
    n_prior_draws: int = 64,
    max_choice_rows: int | None = 300_000,
    history: int = 10,
    recommender: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> CalibrationResult:
    """Fit a parametric population and a catalog to a log (see the module docstring).

    Args:
        log: a path, a DataFrame in the log schema, a `Sessions` or `LogArrays`.
        n_items: the catalog size (default: the largest logged item id + 1).
        dim: embedding dimension of the fitted catalog.
        n_topics: topics of the fitted catalog (default ``round(sqrt(n_items / 3))``).
        base: the preset whose other parameters the calibrated users keep (default
            `engagement`).
        holdout: share of sessions held out of the fit to measure click-prediction AUC, in
            [0, 0.9]; 0 fits on everything (the AUC is then NaN).
        n_prior_draws: M, the draws of the interest prior the mixed logit integrates over
            (cost grows linearly in M).
        max_choice_rows: the choice model (step 3) and the watch fit (step 4) use the rows of
            randomly chosen whole users up to this many rows (their cost is ``rows x L x M``
            per EM pass); None uses every fitted row. Users left out keep the prior as their
            interest.
        history: the click history length H the log's simulator used (the env's default 10).
        recommender: calibrate on this recommender's rows only.
        seed: seed of the holdout split, the SVD, k-means and the prior's draws.
        progress: ``progress(done, total, label)`` after each stage.

    Returns:
        A `CalibrationResult`.
    """
    from recoworld.users.presets import engagement

    dim = _check_positive_int("dim", dim)
    history = _check_positive_int("history", history)
    n_prior_draws = _check_positive_int("n_prior_draws", n_prior_draws)
    if not 0.0 <= holdout <= 0.9:
        raise ConfigError(f"holdout={holdout} must lie in [0, 0.9] (a share of sessions)")
    base = base if base is not None else engagement()
    if not isinstance(base, ParametricUser):
        raise ConfigError(
            f"base={base!r} must be a ParametricUser, e.g. recoworld.users.engagement()"
        )
    p = base.params
    if isinstance(log, LogArrays):
        arr = log
    else:
        arr = LogArrays.from_log(log, n_items=n_items, recommender=recommender)
    if n_topics is None:
        n_topics = _default_topics(arr.n_items)
    n_topics = _check_positive_int("n_topics", n_topics)
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, 5, label)

    session_id = np.cumsum(arr.first) - 1
    held = np.random.default_rng(seed).random(int(session_id[-1]) + 1) < holdout
    fit = ~held[session_id]
    if not fit.any():
        raise ReplayDataError(f"holdout={holdout} left no session to fit on; lower it")
    choice = fit
    if max_choice_rows is not None and int(fit.sum()) > max_choice_rows:
        per_user = np.bincount(arr.user[fit], minlength=arr.n_users)
        order = np.random.default_rng(seed + 1).permutation(arr.n_users)
        keep = np.zeros(arr.n_users, bool)
        keep[order[np.cumsum(per_user[order]) <= max_choice_rows]] = True
        choice = fit & keep[arr.user]

    # 1-2. embeddings and topics; the user state replayed over them; popularity and length
    emb = factorise_clicks(arr, dim, rows=fit, seed=seed)
    topic = spherical_kmeans(emb, n_topics, seed=seed)
    length = item_lengths(arr)
    uniform = np.full(arr.n_items, 1.0 / arr.n_items)
    rep = replay_state(arr, _catalog(emb, topic, uniform, uniform, length, seed), p, history)
    popularity = invert_popularity(
        arr.candidate_counts, topic, rep.topic_draws, rep.cold, arr.n_candidates
    )
    catalog = _catalog(emb, topic, np.full(arr.n_items, 0.5), popularity, length, seed)
    tick("factorised the clicks")

    # 3. choice: a mixed logit over the base prior's interests; item effects, then (tau, u0)
    draw_ids = np.arange(n_prior_draws)
    prior = Population((base,)).sample_keys(
        streams.user_keys(seed + 7919, draw_ids), draw_ids, catalog, history
    )
    prior_theta = prior.theta.astype(np.float64)
    ids, valid = np.maximum(arr.slate, 0), arr.valid
    offset = _state_offset(rep, p, arr.slate.shape[1])
    ml = MixedLogit(
        prior_theta @ emb.T,
        ids,
        valid,
        arr.clicks,
        arr.user,
        arr.n_users,
        offset,
        float(p.beta_aff),
        choice,
    )
    alpha, b = ml.fit_item_effects()
    if not alpha > 0:
        raise ReplayDataError(
            f"the choice fit found a non-positive utility scale (1/tau = {alpha:.3g}): clicks "
            "in this log do not follow the fitted interests; calibrate on a longer log"
        )
    # b = (beta_q q - u0) / tau: place u0 so the shown items' mean quality is 0.5
    shown = np.bincount(ids[valid], minlength=arr.n_items).astype(np.float64)
    u0 = float(p.beta_q) * 0.5 - float((shown * b).sum() / max(shown.sum(), 1.0)) / alpha
    quality = np.clip((b / alpha + u0) / float(p.beta_q), 0.0, 1.0)
    catalog = _catalog(emb, topic, quality, popularity, length, seed)
    c_item = float(p.beta_q) * quality
    alpha, gamma = ml.fit_scale_offset(c_item, alpha, u0 * alpha)
    tau, u0 = 1.0 / alpha, gamma / alpha
    auc = float("nan")
    if (~fit).any():
        rows = np.flatnonzero(~fit)
        prob = ml.click_probabilities(rows, alpha, c_item, gamma)
        auc = click_auc(prob[valid[rows]], arr.clicks[rows][valid[rows]])
    tick("fitted the choice model")

    # 4-5. watch fraction (on the posterior-mean utility of the clicked item) and leaving
    utility = float(p.beta_aff) * ml.expected_affinity() + offset + c_item[ids]
    hit = arr.clicks.any(1) & (arr.watch > 0) & choice
    slot = arr.clicks.argmax(1)
    alpha0, alpha1, noise = _fit_watch(utility[hit, slot[hit]] - u0, arr.watch[hit])
    h0, h_fatigue, h_sat = _fit_leave(arr, rep, p, fit)
    tick("fitted watching and leaving")

    # 6. return gaps and churn
    return_mean, churn0 = _fit_returns(arr, rep, p, fit)
    tick("fitted returns")

    fitted = {
        "tau": tau,
        "u0": u0,
        "alpha0": alpha0,
        "alpha1": alpha1,
        "watch_noise": noise,
        "h0": h0,
        "h_fatigue": h_fatigue,
        "h_sat": h_sat,
        "return_mean": return_mean,
        "churn0": churn0,
    }
    try:
        params = p.replace(**fitted)
    except ConfigError as exc:
        raise ReplayDataError(f"the log gave parameters outside the model's range: {exc}") from exc
    theta = ml.weights @ prior_theta
    theta /= np.maximum(np.linalg.norm(theta, axis=1, keepdims=True), 1e-12)
    result = CalibrationResult(
        population=Population((ParametricUser(params, name="calibrated"),)),
        catalog=catalog,
        fitted=fitted,
        env_kwargs={"num_candidates": arr.n_candidates, "slate_size": int(arr.slate.shape[1])},
        holdout_auc=auc,
        log_likelihood=ml.log_likelihood / max(int(choice.sum()), 1),
        n_rows=arr.n,
        n_users=arr.n_users,
        settings={
            "dim": dim,
            "n_topics": int(topic.max()) + 1,
            "holdout": holdout,
            "n_prior_draws": n_prior_draws,
            "choice_rows": int(choice.sum()),
            "history": history,
            "seed": seed,
            "base": base.name,
            "base_params": {k: float(getattr(p, k)) for k in fitted},
        },
        user_interests=theta,
    )
    tick("done")
    return result
