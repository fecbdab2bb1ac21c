"""Tests for recoworld/Replay-v0: conformance, the replay method, and the simulated-user mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env as gym_check_env

from recoworld import Catalog
from recoworld.errors import ConfigError, InvalidAction, ReplayDataError
from recoworld.replay.converters import convert
from recoworld.replay.env import ENV_ID, ReplayEnv, log_catalog, register_replay_env
from recoworld.replay.loaders import Sessions, load_sessions
from recoworld.simulation import SimulationResult, simulate
from recoworld.testing import check_determinism, check_env, check_vector_matches_single

pytest.importorskip("pyarrow")
N_ITEMS = 300


def simulated_log(out: Path, **env_kwargs: Any) -> Path:
    with pytest.MonkeyPatch.context() as mp:  # the PNG is not under test; skip drawing it
        mp.setattr(SimulationResult, "plot", lambda self, path: Path(path))
        simulate(
            recommenders=("random",),
            n_users=40,
            days=2,
            n_items=N_ITEMS,
            seed=0,
            out_dir=out,
            **env_kwargs,
        )
    return out / "trajectories" / "random"


@pytest.fixture(scope="module")
def slate_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random recommender, K = 20 candidates, slates of 3."""
    return simulated_log(tmp_path_factory.mktemp("slates"), num_candidates=20, slate_size=3)


@pytest.fixture(scope="module")
def single_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random recommender, K = 10 candidates, slates of 1."""
    return simulated_log(tmp_path_factory.mktemp("single"), num_candidates=10, slate_size=1)


@pytest.fixture(scope="module")
def slate_sessions(slate_log: Path) -> Sessions:
    return load_sessions(slate_log)


def replay_all(env: ReplayEnv, policy: Any, seed: int = 0) -> list[dict[str, Any]]:
    """Play every logged session once (sequential order); returns the step infos."""
    infos = []
    for episode in range(env.n_sessions):
        env.reset(seed=seed if episode == 0 else None, options={"session_index": episode})
        done = False
        while not done:
            _, reward, terminated, truncated, info = env.step(policy(env))
            info["reward"] = reward
            infos.append(info)
            done = terminated or truncated
    return infos


def logged_action(env: ReplayEnv) -> np.ndarray:
    """The candidate indices of the slate the log shows at the env's current step."""
    r = env._rows[env._t]
    cand = list(env.sessions.candidate_ids[r])
    idx = np.array([cand.index(x) for x in env.sessions.slate_ids[r]], np.int64)
    return idx[0] if idx.size == 1 else idx


# ------------------------------------------------------------------- conformance
@pytest.mark.parametrize("log", ["slate_log", "single_log"])
def test_gymnasium_and_recoworld_checks(log: str, request: pytest.FixtureRequest) -> None:
    env = ReplayEnv(request.getfixturevalue(log))
    gym_check_env(env, skip_render_check=True)
    check_env(env)


def test_registered_id(slate_log: Path) -> None:
    register_replay_env()
    register_replay_env()  # idempotent
    spec = gym.registry[ENV_ID]
    assert spec.entry_point == "recoworld.replay.env:ReplayEnv"
    env = gym.make(ENV_ID, log_path=slate_log)
    assert isinstance(env.unwrapped, ReplayEnv)
    check_determinism(ENV_ID, n_steps=60, log_path=slate_log)


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_vector_entry_point_matches_single(slate_log: Path, mode: str) -> None:
    register_replay_env()
    ended = check_vector_matches_single(
        ENV_ID, num_envs=3, n_steps=60, autoreset_mode=mode, log_path=slate_log
    )
    assert ended > 0


def test_spaces_follow_the_log(slate_sessions: Sessions) -> None:
    env = ReplayEnv(sessions=slate_sessions)
    assert env.action_space == gym.spaces.MultiDiscrete([20] * 3)
    assert env.observation_space["candidates"].shape == (20, 37)  # dim 32 + 5, as other envs
    assert env.observation_space["user"].shape == (9 + env.catalog.n_topics + 32,)
    scores = ReplayEnv(sessions=slate_sessions, action_type="scores")
    assert scores.action_space == gym.spaces.Box(-1, 1, (20,), np.float32)
    check_env(scores)


# ------------------------------------------------------------- the replay method
def test_uniform_random_policy_matches_one_in_k(single_log: Path) -> None:
    env = ReplayEnv(single_log, order="sequential")
    rng = np.random.default_rng(1)
    infos = replay_all(env, lambda e: rng.integers(10))
    assert env.stats.steps == env.sessions.n_steps == len(infos)
    assert 0.07 < env.stats.match_rate < 0.13  # 1 / K = 0.1 (about 1,200 steps)
    matched = np.array([i["matched"] for i in infos])
    assert env.stats.matched == matched.sum()
    # the replay estimate of the random policy is the logged (random) policy's value
    r = env.sessions.reward
    assert abs(env.stats.value - r.mean()) < 4 * r.std() / np.sqrt(env.stats.matched)


def test_first_slot_rule_matches_one_in_k_on_slates(slate_log: Path) -> None:
    env = ReplayEnv(slate_log)
    rng = np.random.default_rng(2)
    replay_all(env, lambda e: rng.permutation(20)[:3])
    assert 0.5 / 20 < env.stats.match_rate < 1.5 / 20


@pytest.mark.parametrize("match", ["first", "slate"])
def test_the_logging_policy_always_matches(slate_sessions: Sessions, match: str) -> None:
    env = ReplayEnv(sessions=slate_sessions, match=match)
    infos = replay_all(env, logged_action)
    s = slate_sessions
    assert env.stats.matched == env.stats.steps == s.n_steps
    np.testing.assert_allclose(sum(i["reward"] for i in infos), s.reward.sum(), rtol=1e-5)
    np.testing.assert_array_equal(np.stack([i["clicks"] for i in infos]), s.clicks)
    np.testing.assert_array_equal([i["clicked"] for i in infos], s.clicked)
    np.testing.assert_array_equal([i["left"] for i in infos], s.left)


def test_unmatched_steps_earn_nothing_and_the_log_moves_on(slate_sessions: Sessions) -> None:
    env = ReplayEnv(sessions=slate_sessions, match="slate")
    s = slate_sessions

    def wrong(e: ReplayEnv) -> np.ndarray:
        a = logged_action(e)
        return np.array([a[1], a[0], a[2]])  # the logged items, in another order

    infos = replay_all(env, wrong)
    assert env.stats.matched == 0
    assert all(i["reward"] == 0 and not i["matched"] and not i["clicks"].any() for i in infos)
    assert all(i["clicked"] == -1 and i["watch_time"] == 0 for i in infos)
    np.testing.assert_array_equal([i["user_id"] for i in infos], s.user_id)
    np.testing.assert_array_equal([i["session"] for i in infos], s.session)
    np.testing.assert_array_equal(np.stack([i["logged_slate_ids"] for i in infos]), s.slate_ids)
    np.testing.assert_array_equal([i["logged_reward"] for i in infos], s.reward)
    np.testing.assert_array_equal(np.stack([i["propensity"] for i in infos]), s.propensity)


def test_an_episode_is_one_logged_session(slate_sessions: Sessions) -> None:
    env = ReplayEnv(sessions=slate_sessions)
    b = slate_sessions.session_bounds()
    for i in (0, 5, env.n_sessions - 1):
        _, info = env.reset(options={"session_index": i})
        np.testing.assert_array_equal(info["candidate_ids"], slate_sessions.candidate_ids[b[i]])
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            steps += 1
            done = terminated or truncated
        assert steps == b[i + 1] - b[i]
        assert terminated == bool(slate_sessions.left[b[i + 1] - 1])
        with pytest.raises(ResetNeeded):
            env.step(env.action_space.sample())


def test_history_from_earlier_sessions_is_the_same_in_any_order(slate_sessions: Sessions) -> None:
    """Jumping to a session rebuilds the user's history; playing the log in order carries it."""
    in_order = ReplayEnv(sessions=slate_sessions, order="sequential")
    jump = ReplayEnv(sessions=slate_sessions)
    in_order.reset(seed=0)
    seen_history = False
    for i in range(min(in_order.n_sessions, 40)):
        obs, _ = in_order.reset() if i else in_order.reset(seed=0)
        other, _ = jump.reset(options={"session_index": i})
        for key in obs:
            np.testing.assert_array_equal(obs[key], other[key], err_msg=f"session {i} {key}")
        seen_history |= bool(obs["user"][7:9].any())  # lifetime click counts
        done = False
        while not done:
            *_, terminated, truncated, _ = in_order.step(in_order.action_space.sample())
            done = terminated or truncated
    assert seen_history, "no session started with a click history; the check proved nothing"


def test_order_and_session_index(slate_sessions: Sessions) -> None:
    seq = ReplayEnv(sessions=slate_sessions, order="sequential")
    b = slate_sessions.session_bounds()
    for i in range(3):
        _, info = seq.reset(seed=0) if i == 0 else seq.reset()
        assert info["session"] == slate_sessions.session[b[i]]
        assert info["user_id"] == slate_sessions.user_id[b[i]]
    rand = ReplayEnv(sessions=slate_sessions)
    firsts = {rand.reset(seed=s)[1]["user_id"] for s in range(10)}
    assert len(firsts) > 1
    with pytest.raises(ConfigError, match=r"session_index=9999 is outside"):
        rand.reset(options={"session_index": 9999})


# ---------------------------------------------------------------- simulated user
def test_a_simulated_user_answers(slate_sessions: Sessions) -> None:
    env = ReplayEnv(sessions=slate_sessions, user_model="engagement")
    check_env(env)
    b = slate_sessions.session_bounds()
    _, info = env.reset(seed=3, options={"session_index": 2})
    first_len = b[3] - b[2]
    t, done, clicks = 0, False, 0
    while not done:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        t += 1
        if t < first_len:
            assert info["logged_candidates"]
            np.testing.assert_array_equal(
                info["candidate_ids"], slate_sessions.candidate_ids[b[2] + t]
            )
        clicks += int(info["clicks"].sum())
        assert "matched" not in info
        done = terminated or truncated
    assert terminated or t == env.config.max_episode_steps


# ------------------------------------------------------------------ catalogs
def test_the_simulation_catalog_gives_its_features(slate_sessions: Sessions) -> None:
    catalog = Catalog.synthetic(N_ITEMS, seed=0)  # the catalog simulate drew
    env = ReplayEnv(sessions=slate_sessions, catalog=catalog)
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(
        obs["candidates"][:, : catalog.dim + 3], catalog.item_features[info["candidate_ids"]]
    )
    with pytest.raises(ReplayDataError, match=r"the catalog has 100 items"):
        ReplayEnv(sessions=slate_sessions, catalog=Catalog.synthetic(100, n_creators=50, seed=0))


def test_log_catalog(slate_sessions: Sessions) -> None:
    a, b = log_catalog(slate_sessions), log_catalog(slate_sessions)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    top = int(max(slate_sessions.candidate_ids.max(), slate_sessions.slate_ids.max()))
    assert a.n_items == top + 1 and a.dim == 32
    shown = np.bincount(slate_sessions.slate_ids.ravel(), minlength=a.n_items) + 1
    np.testing.assert_allclose(a.popularity, shown / shown.sum())
    # lengths recovered from watch_time / watch_fraction of the simulated catalog
    truth = Catalog.synthetic(N_ITEMS, seed=0).length
    clicked = np.unique(slate_sessions.clicked[slate_sessions.clicked >= 0])
    np.testing.assert_allclose(a.length[clicked], truth[clicked], rtol=1e-3)


def test_a_converted_public_log_replays(tmp_path: Path) -> None:
    src = tmp_path / "ratings.csv"
    rows = [
        f"{u},{i},{(u + i) % 5 + 1},{1_000_000 + 600 * t}"
        for u in range(5)
        for t, i in enumerate(range(u, u + 12))
    ]
    src.write_text("userId,movieId,rating,timestamp\n" + "\n".join(rows) + "\n")
    result = convert(src, "movielens", tmp_path / "log.parquet")
    env = ReplayEnv(result.path, order="sequential")
    assert env.action_space == gym.spaces.Discrete(1)
    check_env(env)
    replay_all(env, lambda e: 0)
    assert env.stats.match_rate == 1.0  # one candidate: every choice is the logged one
    np.testing.assert_allclose(env.stats.value, result.sessions.reward.mean())


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({}, r"give exactly one of log_path=", id="no-log"),
        pytest.param({"match": "exact"}, r"match='exact'", id="match"),
        pytest.param({"order": "shuffled"}, r"order='shuffled'", id="order"),
    ],
)
def test_bad_arguments(slate_sessions: Sessions, kwargs: dict[str, Any], message: str) -> None:
    if kwargs:
        kwargs = {"sessions": slate_sessions, **kwargs}
    with pytest.raises(ConfigError, match=message):
        ReplayEnv(**kwargs)


def test_bad_actions_and_step_before_reset(slate_sessions: Sessions) -> None:
    env = ReplayEnv(sessions=slate_sessions)
    with pytest.raises(ResetNeeded):
        env.step(np.array([0, 1, 2]))
    env.reset(seed=0)
    with pytest.raises(InvalidAction, match=r"outside \[0, 20\)"):
        env.step(np.array([0, 1, 20]))
    with pytest.raises(InvalidAction, match=r"give 3 integer candidate indices"):
        env.step(np.array([0, 1]))


def test_unknown_recommender(slate_log: Path) -> None:
    with pytest.raises(ReplayDataError, match=r"no rows of recommender 'popularity'"):
        ReplayEnv(slate_log, recommender="popularity")
