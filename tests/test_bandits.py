"""Bandits: LinUCB, Diag-LinUCB, linear and in-slate Thompson sampling."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

from recoworld.agents.bandits import (
    DiagLinUCBRecommender,
    InSlateThompsonRecommender,
    LinUCBRecommender,
    ThompsonRecommender,
    bandit_features,
)
from recoworld.agents.base import RandomRecommender
from recoworld.envs import RecoVectorEnv
from recoworld.errors import ConfigError
from recoworld.testing.recommender import check_recommender

NAMES = ["linucb", "diag_linucb", "thompson", "inslate_thompson"]
N_USERS, N_STEPS, SEED = 256, 200, 0  # 300 steps at 1,024 users: benchmarks/bandits.py
SLATE = spaces.MultiDiscrete([50] * 5)


@pytest.mark.parametrize("name", NAMES)
def test_check_recommender(name: str) -> None:
    check_recommender(name, n_steps=20)


def test_check_recommender_takes_factories_and_instances() -> None:
    check_recommender(lambda env, seed: LinUCBRecommender(env.single_action_space, 32), n_steps=5)
    check_recommender(ThompsonRecommender(SLATE, 32, seed=1, propensity_samples=2), n_steps=5)


def _run(make: Any, n_users: int = N_USERS, n_steps: int = N_STEPS) -> tuple[float, Any]:
    """Clicks per user-step of ``make(env)`` on Engagement users, seed 0 (common random
    numbers), learning as it goes; returns the rate and the trained recommender."""
    env = RecoVectorEnv(num_envs=n_users, users="engagement")
    rec = make(env)
    obs, info = env.reset(seed=SEED)
    clicks = 0
    for _ in range(n_steps):
        out = rec.recommend(obs, info)
        obs2, _, term, trunc, info2 = env.step(out.action)
        if hasattr(rec, "update"):
            rec.update(obs, info, out.action, info2)
        rec.reset(term | trunc)
        clicks += int(info2["clicks"].sum())
        obs, info = obs2, info2
    return clicks / (n_users * n_steps), rec


@functools.cache
def _random_clicks() -> float:
    return _run(lambda env: RandomRecommender(env.single_action_space, SEED))[0]


@pytest.mark.parametrize(
    "make",
    [
        lambda env: LinUCBRecommender(env.single_action_space, env.catalog.dim),
        # one extra draw for the propensities keeps the test fast; learning is the same
        lambda env: ThompsonRecommender(
            env.single_action_space, env.catalog.dim, seed=SEED, propensity_samples=1
        ),
    ],
    ids=["linucb", "thompson"],
)
def test_bandit_beats_random_on_clicks(make: Any) -> None:
    # measured over 200 steps of 256 users: LinUCB 0.300, Thompson 0.298, random 0.215 (the
    # bandits lead from the first steps: 1,280 shown slots per step teach a shared model fast)
    clicks, rec = _run(make)
    assert clicks > 1.2 * _random_clicks()
    assert rec.n_updates > 0.9 * N_USERS * N_STEPS * 5  # every shown slot but autoreset steps


# ----------------------------------------------------------------- features
def test_bandit_features_layout() -> None:
    rng = np.random.default_rng(0)
    n, k, dim = 3, 4, 6
    cand = rng.uniform(-1, 1, (n, k, dim + 5)).astype(np.float32)
    user = rng.uniform(-1, 1, (n, 9 + 2 + dim)).astype(np.float32)
    x = bandit_features(cand, user, dim)
    assert x.shape == (n, k, 2 * dim + 5 + 2) and x.dtype == np.float32
    m = user[:, None, -dim:]
    np.testing.assert_allclose(x[..., :dim], cand[..., :dim])
    np.testing.assert_allclose(x[..., dim : dim + 5], cand[..., dim:] - 0.5)
    np.testing.assert_allclose(x[..., dim + 5 : 2 * dim + 5], cand[..., :dim] * m, rtol=1e-6)
    np.testing.assert_allclose(x[..., -2], (cand[..., :dim] * m).sum(2), rtol=1e-5)
    assert (x[..., -1] == 1).all()


# --------------------------------------------------------------- Diag-LinUCB
def test_diag_linucb_variance_shrinks_exactly_on_seen_edges() -> None:
    env = RecoVectorEnv(num_envs=16, users="engagement")
    obs, info = env.reset(seed=0)
    rec = DiagLinUCBRecommender(env.single_action_space, env.catalog.n_items, env.catalog.n_topics)
    prior = rec.feature_variance.copy()
    assert np.allclose(prior, 1.0)
    for _ in range(5):
        out = rec.recommend(obs, info)
        obs2, _, _, _, info2 = env.step(out.action)
        # the context of the step's users, and the items they were shown
        w = rec.context(obs)
        shown = np.take_along_axis(info["candidate_ids"], out.action, 1)
        rec.update(obs, info, out.action, info2)
        var = rec.feature_variance
        seen_any = np.zeros_like(var, bool)
        for u in range(w.shape[0]):  # reference loop, in the test only
            valid = info2["slate_ids"][u] >= 0
            seen_any[np.ix_(shown[u][valid], w[u] > 0)] = True
        assert (var[seen_any] < prior[seen_any]).all()
        assert (var[~seen_any] == prior[~seen_any]).all()  # nothing else moves
        prior = var.copy()
        obs, info = obs2, info2
    # the bias cluster (always 1) has seen every shown item
    assert (rec.feature_variance[:, -1] < 1).sum() >= 16 * 5


def test_diag_linucb_learns_an_items_reward() -> None:
    """Feeding clicks on one item raises its estimate above an item never clicked."""
    k = 50
    rec = DiagLinUCBRecommender(SLATE, n_items=100, n_topics=2, alpha=0.0)
    obs = {"user": np.zeros((1, 9 + 2 + 4), np.float32)}
    info = {"candidate_ids": np.arange(k)[None]}
    action = np.array([[7, 8, 9, 10, 11]])
    feedback = {"clicks": np.array([[True, False, False, False, False]]), "slate_ids": action}
    for _ in range(20):
        rec.update(obs, info, action, feedback)
    score = rec.score(obs, info)[0]
    assert score[7] > 0.9 and score[8] == 0 and int(np.argmax(score)) == 7
    assert rec.recommend(obs, info).action[0, 0] == 7


# -------------------------------------------------------------------- updates
def test_updates_skip_empty_slots() -> None:
    env = RecoVectorEnv(num_envs=4, users="engagement")
    obs, info = env.reset(seed=0)
    for rec in (
        LinUCBRecommender(SLATE, 32),
        DiagLinUCBRecommender(SLATE, env.catalog.n_items, env.catalog.n_topics),
        ThompsonRecommender(SLATE, 32, seed=0),
    ):
        out = rec.recommend(obs, info)
        before = (rec.precision.copy(), rec.b.copy())
        feedback = {
            "clicks": np.zeros((4, 5), bool),
            "slate_ids": np.full((4, 5), -1),
            "watch_time": np.zeros(4, np.float32),
        }
        rec.update(obs, info, out.action, feedback)
        assert rec.n_updates == 0
        assert (rec.precision == before[0]).all() and (rec.b == before[1]).all()
        feedback["slate_ids"][1, 2] = 5  # one shown slot
        rec.update(obs, info, out.action, feedback)
        assert rec.n_updates == 1


def test_linucb_variance_shrinks_and_the_bonus_with_it() -> None:
    env = RecoVectorEnv(num_envs=8, users="engagement")
    obs, info = env.reset(seed=0)
    rec = LinUCBRecommender(env.single_action_space, 32, alpha=1.0)
    width0 = rec.score(obs, info) - rec.features(obs) @ rec.theta.astype(np.float32)
    var0 = rec.feature_variance
    for _ in range(10):
        out = rec.recommend(obs, info)
        obs2, _, _, _, info2 = env.step(out.action)
        rec.update(obs, info, out.action, info2)
        obs, info = obs2, info2
    width = rec.score(obs, info) - rec.features(obs) @ rec.theta.astype(np.float32)
    assert (rec.feature_variance < var0).all()
    assert width.mean() < 0.5 * width0.mean()


# ---------------------------------------------------------------- Thompson
def test_inslate_thompson_uses_one_posterior_draw_per_slot() -> None:
    env = RecoVectorEnv(num_envs=64, users="engagement")
    obs, info = env.reset(seed=0)
    rec = InSlateThompsonRecommender(env.single_action_space, 32, seed=0, noise_var=1.0)
    draws: list[np.ndarray] = []
    draw = rec._draw
    rec._draw = lambda n, sets: draws.append(draw(n, sets)) or draws[-1]  # type: ignore[method-assign]
    out = rec.recommend(obs, info)
    theta = draws[0][:, 0]  # (n, L, d): the draws that built the shown slates
    assert theta.shape == (64, 5, rec.n_features)
    score = np.einsum("nkd,nld->nlk", rec.features(obs), theta)  # (n, L, K)
    taken = np.zeros((64, 50), bool)
    for j in range(5):  # slot j: the best candidate left under draw j
        best = np.where(taken, -np.inf, score[:, j]).argmax(1)
        assert (out.action[:, j] == best).all()
        taken[np.arange(64), best] = True
    # the slots really use different draws: draw 0's pick for slot 1 often differs
    taken0 = np.zeros((64, 50), bool)
    taken0[np.arange(64), out.action[:, 0]] = True
    second_under_draw0 = np.where(taken0, -np.inf, score[:, 0]).argmax(1)
    assert (second_under_draw0 != out.action[:, 1]).mean() > 0.3


def test_thompson_propensities_estimate_the_slot_probabilities() -> None:
    """The Monte-Carlo propensity of each shown item at its slot, given the shown items above
    it, matches how often repeated calls that agree above slot j put that item at slot j."""
    _, rec = _run(
        lambda env: ThompsonRecommender(env.single_action_space, 32, seed=0, propensity_samples=1),
        n_users=32,
        n_steps=20,
    )
    env = RecoVectorEnv(num_envs=1, users="engagement")
    obs, info = env.reset(seed=5)
    rec.propensity_samples = 2000
    first = rec.recommend(obs, info)
    assert not first.deterministic
    p = first.propensity[0]
    assert (p > 10 / 2001).all()  # well above the floor 1 / (M + 1): real estimates
    rec.propensity_samples = 1
    shown = np.array([rec.recommend(obs, info).action[0] for _ in range(1000)])
    match = shown == first.action[0]
    through = np.cumprod(match, axis=1)
    before = np.concatenate([np.ones((len(shown), 1), bool), through[:, :-1]], axis=1)
    freq = through.sum(0) / np.maximum(before.sum(0), 1)
    counted = before.sum(0) >= 50  # slots with enough agreeing prefixes to estimate
    assert counted[:2].all()
    np.testing.assert_allclose(p[counted], freq[counted], atol=0.06)


def test_same_seed_same_slates() -> None:
    env = RecoVectorEnv(num_envs=8, users="engagement")
    obs, info = env.reset(seed=0)
    a = InSlateThompsonRecommender(SLATE, 32, seed=3).recommend(obs, info)
    b = InSlateThompsonRecommender(SLATE, 32, seed=3).recommend(obs, info)
    c = InSlateThompsonRecommender(SLATE, 32, seed=4).recommend(obs, info)
    assert (a.action == b.action).all() and (a.propensity == b.propensity).all()
    assert (a.action != c.action).any()


# ------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: LinUCBRecommender(SLATE, 32, alpha=-1.0), r"alpha=-1\.0 must be a finite"),
        (lambda: LinUCBRecommender(SLATE, 32, alpha=math.nan), r"alpha=nan must be a finite"),
        (lambda: LinUCBRecommender(SLATE, 32, ridge=0.0), r"ridge=0\.0 must be .* > 0"),
        (lambda: LinUCBRecommender(SLATE, 0), r"dim=0 must be a positive integer"),
        (lambda: LinUCBRecommender(SLATE, 32, watch_weight=-1), r"watch_weight=-1 must"),
        (lambda: LinUCBRecommender(spaces.Box(-1, 1, (50,)), 32), r"not Discrete/MultiDisc"),
        (lambda: DiagLinUCBRecommender(SLATE, 0, 5), r"n_items=0 must be a positive integer"),
        (lambda: DiagLinUCBRecommender(SLATE, 10, 5, alpha=math.inf), r"alpha=inf must be"),
        (lambda: DiagLinUCBRecommender(SLATE, 10, 5, ridge=-2.0), r"ridge=-2\.0 must be"),
        (lambda: ThompsonRecommender(SLATE, 32, prior_var=0.0), r"prior_var=0\.0 must be"),
        (lambda: ThompsonRecommender(SLATE, 32, noise_var=-1.0), r"noise_var=-1\.0 must be"),
        (
            lambda: ThompsonRecommender(SLATE, 32, propensity_samples=0),
            r"propensity_samples=0 must be an integer >= 1",
        ),
        (
            lambda: InSlateThompsonRecommender(SLATE, 32, propensity_samples=2.5),
            r"propensity_samples=2\.5 must be an integer",
        ),
    ],
)
def test_bad_hyperparameters(make: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()
