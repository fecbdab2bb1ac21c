"""UserAuthor-v0 and the user–author funnel: rates, nesting, depth, pair features, bad input.

(Conformance, vector == single and determinism run in tests/test_envs.py over every id.)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import recoworld  # noqa: F401  (registers the ids)
from recoworld.envs.user_author import (
    N_PAIR,
    UserAuthorCore,
    UserAuthorEnv,
    UserAuthorVectorEnv,
)
from recoworld.errors import ConfigError
from recoworld.users import AuthorFunnel, user_author
from recoworld.users.author import N_FUNNEL_DRAWS

SMALL = {"n_items": 300, "num_candidates": 20, "slate_size": 3}
ENV_ID = "recoworld/UserAuthor-v0"


def neutral_response(funnel: AuthorFunnel, n: int, depth: float = 0.0, following: bool = False):
    gen = np.random.default_rng(0)
    shape = (n, 5)
    return funnel.respond(
        content=np.zeros(shape),
        affinity=np.zeros(shape),
        depth=np.full(shape, depth),
        following=np.full(shape, following),
        valid=np.ones(shape, bool),
        u=gen.random((n, N_FUNNEL_DRAWS)),
    )


# ------------------------------------------------------------------------- the funnel
def test_neutral_rates_are_the_configured_rates():
    f = user_author()
    n = 400_000
    fresh = neutral_response(f, n)
    follower = neutral_response(f, n, following=True)
    assert fresh.clicks.any(1).mean() == pytest.approx(0.10, abs=0.002)
    assert fresh.follows.any(1).mean() == pytest.approx(0.01, abs=0.0006)
    assert follower.gifts.any(1).mean() == pytest.approx(0.001, abs=0.00025)
    # a non-follower gifts nonfollower_gift times as often (when it does not follow now)
    nonfollower = fresh.gifts.any(1) & ~fresh.follows.any(1)
    assert nonfollower.mean() < 0.2 * 0.001


def test_funnel_is_nested_and_a_follower_cannot_follow_again():
    r = neutral_response(user_author(click_rate=0.5, follow_rate=0.3, gift_rate=0.2), 50_000)
    assert not (r.follows & ~r.clicks).any() and not (r.gifts & ~r.clicks).any()
    assert (r.clicks.sum(1) <= 1).all()
    again = neutral_response(user_author(click_rate=0.5, follow_rate=0.3), 50_000, following=True)
    assert not again.follows.any()


def test_deeper_pairs_convert_more_at_every_stage():
    f = user_author()
    shallow, deep = neutral_response(f, 200_000), neutral_response(f, 200_000, depth=2.0)
    assert deep.clicks.any(1).mean() > 1.5 * shallow.clicks.any(1).mean()
    # conditional on a click, a deeper pair follows more often
    p_follow = [r.follows.any(1).sum() / r.clicks.any(1).sum() for r in (shallow, deep)]
    assert p_follow[1] > 1.5 * p_follow[0]
    gifts = [neutral_response(f, 200_000, d, True).gifts.any(1).mean() for d in (0.0, 2.0)]
    assert gifts[1] > 2.0 * gifts[0]


# ---------------------------------------------------------------------- the env's rates
def random_rollout(steps: int, users: int = 256, seed: int = 0, **kwargs):
    env = gym.make_vec(ENV_ID, num_envs=users, vectorization_mode="vector_entry_point", **kwargs)
    gen = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        action = np.argsort(gen.random((users, env.single_action_space.nvec[0])), 1)[:, :5]
        prev_obs = obs
        obs, reward, _, _, info = env.step(action)
        rows.append((prev_obs, action, info, reward))
    return env, rows


def test_env_rates_under_random_slates_are_near_the_targets():
    _, rows = random_rollout(30, users=512)
    clicks = np.mean([i["clicks"].any(1).mean() for _, _, i, _ in rows])
    follows = np.mean([i["followed"].mean() for _, _, i, _ in rows])
    gifts = np.mean([i["gifted"].mean() for _, _, i, _ in rows])
    # measured 0.122 / 0.017 / 0.0005 (clicks and follows slightly above the neutral rates:
    # candidates fit the user's interest, and pairs deepen as they meet; gifts below, as few
    # users follow anyone yet)
    assert 0.08 < clicks < 0.17
    assert 0.006 < follows < 0.025
    assert 0.0002 < gifts < 0.004
    # nesting at the env level, and rewards are the documented weighted sum
    for _, _, info, reward in rows:
        assert not (info["followed"] & ~info["clicks"].any(1)).any()
        assert not (info["gifted"] & ~info["clicks"].any(1)).any()
        expected = info["clicks"].sum(1) + 5.0 * info["followed"] + 20.0 * info["gifted"]
        np.testing.assert_allclose(reward, expected)


def test_pairs_that_clicked_before_click_more():
    env, rows = random_rollout(60)
    base = env.unwrapped.core.obs_builder.base_dim
    hit = {True: [], False: []}
    for obs, action, info, _ in rows:
        shown = np.take_along_axis(obs["candidates"][:, :, base], action, 1) > 0  # past clicks
        for key in (True, False):
            hit[key].append(info["clicks"][shown == key])
    p_repeat = np.concatenate(hit[True]).mean()
    p_new = np.concatenate(hit[False]).mean()
    # measured 0.041 vs 0.023 per shown item (depth, and affinity revealed by the past click)
    assert p_repeat > 1.5 * p_new, (p_repeat, p_new)


# ------------------------------------------------------------------------ pair features
def test_pair_features_follow_the_history():
    env = gym.make(ENV_ID, **SMALL, n_requests=80)
    creator = env.unwrapped.catalog.creator
    obs, info = env.reset(seed=3)
    gen = np.random.default_rng(3)
    clicks, follows, gifts, meets, last = {}, set(), {}, {}, {}
    base = env.unwrapped.core.obs_builder.base_dim
    for t in range(80):
        # expected pair columns of every candidate, from the history so far
        for k, item in enumerate(info["candidate_ids"]):
            a = int(creator[item])
            c, g, m = clicks.get(a, 0), gifts.get(a, 0), meets.get(a, 0)
            since = 1.0 if a not in last else (t - last[a]) / (t - last[a] + 20.0)
            want = [c / (c + 5), float(a in follows), g / (g + 5), since, m / (m + 5)]
            np.testing.assert_allclose(obs["candidates"][k, base:], want, rtol=1e-6,
                                       err_msg=f"request {t}, candidate {k}")  # fmt: skip
        action = gen.permutation(20)[:3]
        obs, _, _, trunc, info = env.step(action)
        for a in {int(creator[i]) for i in info["slate_ids"] if i >= 0}:
            meets[a] = meets.get(a, 0) + 1
            last[a] = t
        if info["clicked"] >= 0:
            a = int(creator[info["clicked"]])
            clicks[a] = clicks.get(a, 0) + 1
            if info["followed"]:
                assert a not in follows, "followed an author twice"
                follows.add(a)
            gifts[a] = gifts.get(a, 0) + int(info["gifted"])
    assert trunc and sum(clicks.values()) > 0 and meets


def test_episode_is_n_requests_then_truncated():
    env = gym.make(ENV_ID, **SMALL, n_requests=7)
    env.reset(seed=0)
    ends = [env.step(env.action_space.sample())[2:4] for _ in range(7)]
    assert ends[:-1] == [(False, False)] * 6 and ends[-1] == (False, True)


def test_hidden_affinity_never_reaches_the_observation():
    env = UserAuthorEnv(**SMALL)
    env.reset(seed=1)
    core = env.core
    assert isinstance(core, UserAuthorCore)
    before = core.observe()
    core.affinity[:] = np.random.default_rng(0).normal(size=core.affinity.shape)
    after = core.observe()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    assert before["candidates"].shape == (1, 20, env.observation_space["candidates"].shape[1])
    assert env.observation_space["candidates"].shape[1] == core.obs_builder.base_dim + N_PAIR


def test_same_user_same_affinity_in_any_batch():
    venv = UserAuthorVectorEnv(num_envs=5, **SMALL)
    venv.reset(seed=10)
    single = UserAuthorEnv(**SMALL)
    single.reset(seed=13)
    np.testing.assert_array_equal(venv.core.affinity[3], single.core.affinity[0])


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"funnel": {"click_rate": 1.5}}, r"click_rate=1.5 is a probability"),
        ({"funnel": {"follow_rate": -0.1}}, r"follow_rate=-0.1 is a probability"),
        ({"funnel": {"click_rate": 0.0}}, r"strictly between 0 and 1"),
        ({"funnel": {"follow_rate": 0.2}}, r"not nested.*click_rate >= follow_rate"),
        ({"funnel": {"gift_rate": 0.05}}, r"not nested"),
        ({"funnel": {"depth_weight": -1.0}}, r"depth_weight=-1.0 must be >= 0"),
        ({"funnel": {"click_rate": float("nan")}}, r"must be a finite number"),
        ({"funnel": "strong"}, r"must be an AuthorFunnel"),
        ({"n_creators": 0}, r"n_creators=0 is fewer than one author.*give n_creators >= 1"),
        ({"n_creators": 1.5}, r"n_creators=1.5 is not a whole number; give an integer n_crea"),
        ({"n_requests": 2.5}, r"n_requests=2.5 is not a whole number; give an integer n_requ"),
        ({"n_requests": "50"}, r"n_requests='50' is not a whole number"),
        ({"n_requests": True}, r"n_requests=True is not a whole number"),
        ({"n_requests": 1}, r"n_requests=1 is too short for any user–author pair to meet twice"),
        ({"n_requests": 0}, r"too short"),
        ({"reward_gift": float("inf")}, r"reward_gift=inf must be a finite number"),
    ],
)
def test_bad_input_is_refused_at_construction(kwargs, message):
    for make in (lambda: gym.make(ENV_ID, **SMALL, **kwargs),
                 lambda: UserAuthorVectorEnv(num_envs=2, **SMALL, **kwargs)):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            make()


@pytest.mark.parametrize("n", [np.int64(3), np.int32(3), 3.0])
def test_whole_numbers_of_any_type_are_accepted(n):
    for env in (UserAuthorEnv(**SMALL, n_requests=n, n_creators=n),
                UserAuthorVectorEnv(num_envs=2, **SMALL, n_requests=n, n_creators=n)):  # fmt: skip
        assert env.settings.n_requests == 3 and type(env.settings.n_requests) is int
        assert env.catalog.n_creators == 3
    env = UserAuthorEnv(**SMALL, n_requests=np.int64(3))
    env.reset(seed=0)
    truncated = [env.step(env.action_space.sample())[3] for _ in range(3)]
    assert truncated == [False, False, True]


@pytest.mark.parametrize(("n_requests", "cap"), [(200, 1), (1000, 1), (5, 1)])
def test_a_step_cap_below_two_requests_is_refused(n_requests, cap):
    message = (
        rf"max_episode_steps={cap} caps the episode below n_requests={n_requests}: "
        rf"min\(n_requests, max_episode_steps\) = 1 request\(s\) is too short.*"
        r"give max_episode_steps >= 2"
    )
    for make in (lambda: UserAuthorEnv(**SMALL, n_requests=n_requests, max_episode_steps=cap),
                 lambda: UserAuthorVectorEnv(2, **SMALL, n_requests=n_requests,
                                             max_episode_steps=cap)):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            make()
    # two requests are enough; the cap still truncates the episode
    env = UserAuthorEnv(**SMALL, n_requests=n_requests, max_episode_steps=2)
    env.reset(seed=0)
    assert [env.step(env.action_space.sample())[3] for _ in range(2)] == [False, True]


def test_zero_authors_in_the_funnel_itself():
    with pytest.raises(ConfigError, match="at least one author"):
        user_author().author_factors(0, seed=0)


def test_user_author_preset_takes_overrides():
    f = user_author(depth_weight=1.0)
    assert isinstance(f, AuthorFunnel) and f.depth_weight == 1.0 and f.click_rate == 0.10
    with pytest.raises(ConfigError, match="not nested"):
        user_author(follow_rate=0.5)
