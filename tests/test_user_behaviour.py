"""Behaviours the parametric user must show, pinned with numbers (USER_MODEL.md)."""

from __future__ import annotations

import numpy as np
import pytest

from recoworld import rng
from recoworld.agents import make_recommender
from recoworld.catalog import Catalog
from recoworld.envs import EnvConfig, RecoVectorEnv
from recoworld.envs.core import World
from recoworld.types import InstructionKind as K
from recoworld.users import novelty_seeking
from recoworld.users.parametric import N_STEP_DRAWS


def _topics(env: RecoVectorEnv, info: dict) -> np.ndarray:
    return env.catalog.topic[info["candidate_ids"]]


def one_topic_policy(env: RecoVectorEnv, info: dict, gen: np.random.Generator) -> np.ndarray:
    """Fill the slate from the most frequent topic among the candidates."""
    tp = _topics(env, info)
    counts = (tp[:, :, None] == np.arange(env.catalog.n_topics)).sum(1)
    mode = counts.argmax(1)
    score = (tp != mode[:, None]) + 0.1 * gen.random(tp.shape)
    return np.argsort(score, 1)[:, : env.config.slate_size]


def mixed_policy(env: RecoVectorEnv, info: dict, gen: np.random.Generator) -> np.ndarray:
    """Random candidates, at most one per topic where possible."""
    tp = _topics(env, info)
    k = tp.shape[1]
    dup = ((tp[:, :, None] == tp[:, None, :]) & np.tri(k, k, -1, bool)).any(2)
    return np.argsort(dup * 10.0 + gen.random(tp.shape), 1)[:, : env.config.slate_size]


def run_policy(
    policy, users: str = "novelty_seeking", n: int = 300, steps: int = 150, seed: int = 0
) -> dict[str, float]:
    env = RecoVectorEnv(num_envs=n, users=users, n_items=600, num_candidates=40, slate_size=5)
    _, info = env.reset(seed=seed)
    gen = np.random.default_rng(seed)
    kinds = np.zeros(5)
    lengths: list[int] = []
    cur = np.zeros(n, np.int64)
    for _ in range(steps):
        _, _, _, _, info = env.step(policy(env, info, gen))
        kinds += np.bincount(info["instruction_kind"], minlength=5)
        cur += 1
        lengths.extend(cur[info["left"]])
        cur[info["left"]] = 0
    per100 = kinds / (n * steps) * 100
    return {
        "new": per100[K.SOMETHING_NEW],
        "less": per100[K.LESS_OF_TOPIC],
        "session": float(np.mean(lengths)),
    }


def test_one_topic_triggers_something_new_and_shorter_sessions() -> None:
    mono = run_policy(one_topic_policy)
    mixed = run_policy(mixed_policy)
    # boredom speaks up: "something new" (exploring sessions) and "less of" (the rest)
    assert mono["new"] > 0.5, mono
    assert mono["new"] > 10 * max(mixed["new"], 0.01), (mono, mixed)
    assert mono["less"] > mixed["less"]
    # and the monotone feed loses the user sooner (measured: ~17.8 vs ~20.9 steps)
    assert mono["session"] < 0.92 * mixed["session"], (mono, mixed)


def _world(users, **kw) -> World:
    return World(EnvConfig(users=users, n_items=600, num_candidates=40, slate_size=5, **kw))


def test_novelty_seekers_click_novel_items_more_when_propensity_is_high() -> None:
    """Same users, same slates (2 familiar + 3 novel items), same draws; only the session
    propensity differs."""
    world = _world(novelty_seeking())
    cat = world.catalog
    n = 4000
    state = world.sample_users(rng.user_keys(1, np.arange(n)), np.arange(n))
    fav = (state.theta @ cat.topic_centroids.T).argmax(1)
    by_topic = [np.flatnonzero(cat.topic == t) for t in range(cat.n_topics)]
    gen = np.random.default_rng(0)
    hist = np.stack([gen.choice(by_topic[t], 10) for t in fav])
    state.history[:] = hist
    state.familiar[np.arange(n), fav] = True
    other = (fav[:, None] + 1 + gen.integers(0, cat.n_topics - 1, (n, 3))) % cat.n_topics
    novel = np.stack([[gen.choice(by_topic[t]) for t in row] for row in other])
    familiar = np.stack([gen.choice(by_topic[t], 2) for t in fav])
    slate = np.concatenate([familiar, novel], 1)
    u = rng.uniforms(state.key, 7, rng.STEP, N_STEP_DRAWS)
    share = {}
    for p in (0.9, 0.1):
        state.propensity[:] = p
        fb = world.users.respond(state, slate, cat, u)
        clicks = fb.clicks
        share[p] = clicks[:, 2:].sum() / max(clicks.sum(), 1)
    assert share[0.9] > share[0.1] + 0.15, share


def test_novelty_seekers_in_the_env_click_novel_topics_more_in_exploring_sessions() -> None:
    env = RecoVectorEnv(
        num_envs=400, users="novelty_seeking", n_items=600, num_candidates=40, slate_size=5
    )
    _, info = env.reset(seed=3)
    gen = np.random.default_rng(3)
    tallies = {"hi": np.zeros(2), "lo": np.zeros(2)}
    for _ in range(150):
        st = env.core.state
        prop, nov, fam = st.propensity.copy(), st.life_novel.copy(), st.life_familiar.copy()
        settled = st.history[:, 4] >= 0  # compare users who already have a history
        _, _, term, trunc, info = env.step(mixed_policy(env, info, gen))
        dn, df = env.core.state.life_novel - nov, env.core.state.life_familiar - fam
        ok = settled & ~(term | trunc | info["left"])
        for name, m in (("hi", ok & (prop > 0.7)), ("lo", ok & (prop < 0.3))):
            tallies[name] += (dn[m].sum(), (dn + df)[m].sum())
    hi, lo = (t[0] / t[1] for t in tallies.values())
    assert hi > lo + 0.04, (hi, lo)


def test_retention_users_return_sooner_after_satisfying_sessions() -> None:
    world = _world("retention")
    n = 1500
    state = world.sample_users(rng.user_keys(5, np.arange(n)), np.arange(n))
    gen = np.random.default_rng(5)
    sat, gaps = [], []
    for _ in range(250):
        live = np.flatnonzero(~state.churned)
        if live.size == 0:
            break
        sub = state.take(live)
        cand = world.candidates(sub)
        action = np.argsort(gen.random(cand.shape), 1)[:, :5]
        slate, _ = world.slate(action, cand)
        res = world.advance(sub, slate)
        ended = np.flatnonzero(res.feedback.leave & ~res.churned)
        sat.extend(sub.satisfaction[ended])  # the session's satisfaction at its end
        gaps.extend(res.gap[ended])
        world.start_next(sub, ended, res.gap[ended])
        state.put(live, sub)
    sat, gaps = np.asarray(sat), np.asarray(gaps)
    lo, hi = np.quantile(sat, [1 / 3, 2 / 3])
    assert gaps[sat >= hi].mean() < gaps[sat <= lo].mean() - 0.2, (
        gaps[sat >= hi].mean(),
        gaps[sat <= lo].mean(),
    )


def test_churned_users_never_come_back(tmp_path) -> None:
    """In a population run, no user has a step after the step at which it churned."""
    pytest.importorskip("pyarrow")
    from recoworld.replay import read_trajectories
    from recoworld.simulation import simulate

    simulate(
        users="retention",
        recommenders=("random",),
        n_users=300,
        days=10,
        seed=2,
        n_items=300,
        num_candidates=20,
        slate_size=3,
        out_dir=tmp_path,
    )
    log = read_trajectories(tmp_path / "trajectories")
    churn_day = log[log["churned"]].groupby("user_id")["day"].min()
    assert len(churn_day) > 10  # enough users churn for the test to mean something
    last_day = log.groupby("user_id")["day"].max()
    assert (last_day[churn_day.index] == churn_day).all()
    steps_after = log.merge(churn_day.rename("churn_day"), on="user_id")
    churn_rows = steps_after[steps_after["churned"]]
    # the churning step is the user's last step
    last_step = log.groupby("user_id")[["session", "step"]].max()
    assert (
        churn_rows.set_index("user_id")["session"]
        == last_step.loc[churn_rows["user_id"], "session"].to_numpy()
    ).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_popularity_beats_random_on_clicks_for_engagement_users(seed: int) -> None:
    ctr = {}
    for name in ("random", "popularity"):
        env = RecoVectorEnv(num_envs=400, users="engagement")
        rec = make_recommender(name, env, seed=seed)
        obs, info = env.reset(seed=seed)
        clicks = 0
        for _ in range(150):
            obs, _, term, trunc, info = env.step(rec.recommend(obs, info).action)
            rec.reset(term | trunc)
            clicks += info["clicks"].any(1).sum()
        ctr[name] = clicks / (400 * 150)
    assert ctr["popularity"] > 1.1 * ctr["random"], ctr


def test_reshowing_the_last_clicked_item_does_not_win() -> None:
    """Trap: showing the item the user just clicked again is penalised (repeat, exposure)."""
    world = _world("engagement")
    n = 2000
    state = world.sample_users(rng.user_keys(9, np.arange(n)), np.arange(n))
    cand = world.candidates(state)
    u = rng.uniforms(state.key, 1, rng.STEP, N_STEP_DRAWS)
    slate = cand[:, :1].copy()
    first = world.users.respond(state, slate, world.catalog, u).clicks.mean()
    state.history[:, 0] = slate[:, 0]
    again = world.users.respond(state, slate, world.catalog, u).clicks.mean()
    assert again < 0.6 * first, (first, again)


def test_observation_reveals_no_hidden_state() -> None:
    """Two users identical in every observable field but with different hidden interest,
    novelty and satisfaction get identical observations."""
    env = RecoVectorEnv(num_envs=2, users="novelty_seeking", n_items=300, num_candidates=20)
    env.reset(seed=0)
    st = env.core.state
    st.put(np.array([1]), st.take(np.array([0])))
    env.core.candidates[1] = env.core.candidates[0]
    st.theta[1] = -st.theta[0]
    st.novelty[1] = 1 - st.novelty[0]
    st.propensity[1] = 1 - st.propensity[0]
    st.satisfaction[1] = st.satisfaction[0] - 1
    st.exposure[1] = 1 - st.exposure[0]
    obs = env.core.observe()
    for key, value in obs.items():
        np.testing.assert_array_equal(value[0], value[1], err_msg=key)


@pytest.mark.parametrize("name", ["random", "popularity"])
def test_episodes_are_neither_trivially_short_nor_endless(name: str) -> None:
    env = RecoVectorEnv(num_envs=300, users="engagement", max_episode_steps=500)
    rec = make_recommender(name, env, seed=0)
    obs, info = env.reset(seed=0)
    length = np.zeros(300, np.int64)
    finished: list[int] = []
    capped = 0
    for _ in range(400):
        obs, _, term, trunc, info = env.step(rec.recommend(obs, info).action)
        rec.reset(term | trunc)
        length += 1
        done = term | trunc
        finished.extend(length[done])
        capped += int(trunc.sum())
        length[done] = -1  # the next step is the autoreset step
    med = float(np.median(finished))
    assert 8 <= med <= 60, med
    assert capped == 0


def test_catalog_popularity_is_heavy_tailed_and_tracks_quality() -> None:
    cat = Catalog.synthetic(5000, seed=0)
    top = np.sort(cat.popularity)[::-1]
    assert top[:50].sum() > 5 * 50 / 5000  # the top 1% holds far more than 1% of the mass
    assert np.corrcoef(cat.quality, np.log(cat.popularity))[0, 1] > 0.4
