"""Tables of bad input and the error each must raise, with a message naming the bad value."""

from __future__ import annotations

import re
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded

from recoworld import Catalog
from recoworld.envs import CandidateMix, RecoEnv, RecoVectorEnv
from recoworld.errors import CatalogError, ConfigError, InvalidAction
from recoworld.users import UserParams

ENV_ID = "recoworld/Engagement-v0"
K = 10
TINY = {"n_items": 50, "num_candidates": K, "slate_size": 3}
NAN = float("nan")


def make_single(**extra: Any) -> gym.Env[Any, Any]:
    env = gym.make(ENV_ID, **{**TINY, **extra})
    env.reset(seed=0)
    return env


def make_vector(num_envs: int = 2, **extra: Any) -> gym.vector.VectorEnv[Any, Any, Any]:
    envs = gym.make_vec(
        ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **{**TINY, **extra}
    )
    envs.reset(seed=0)
    return envs


def assert_names_action_and_space(exc: pytest.ExceptionInfo[InvalidAction], space: Any) -> None:
    message = str(exc.value)
    assert message.startswith("action "), message
    assert str(space) in message, f"{message!r} does not name the action space {space}"


# ------------------------------------------------------------------- invalid actions
@pytest.mark.parametrize(
    ("action", "match"),
    [
        pytest.param([[0, 1, 2], [0, 1, 2]], r"give 3 integer candidate indices", id="wrong-shape"),
        pytest.param([0, 1], r"give 3 integer candidate indices", id="too-few-slots"),
        pytest.param([0, 1, 2, 3], r"give 3 integer candidate indices", id="too-many-slots"),
        pytest.param(1, r"give 3 integer candidate indices", id="scalar"),
        pytest.param([0.0, 1.0, 2.0], r"dtype float64", id="float-dtype"),
        pytest.param(np.array([0, 1, 2], np.float32), r"dtype float32", id="float32-dtype"),
        pytest.param([0, NAN, 1], r"contains NaN", id="nan"),
        pytest.param([-1, 0, 1], rf"outside \[0, {K}\)", id="minus-one"),
        pytest.param([0, 1, K], rf"outside \[0, {K}\)", id="index-K"),
        pytest.param(["a", "b", "c"], r"dtype <U1", id="strings"),
    ],
)
def test_invalid_action_on_a_single_env(action, match):
    env = make_single()
    with pytest.raises(InvalidAction, match=match) as exc:
        env.step(action)
    assert_names_action_and_space(exc, env.action_space)


@pytest.mark.parametrize(
    ("action", "match"),
    [
        pytest.param(np.zeros((3, 3), int), r"shape \(3, 3\)", id="wrong-number-of-users"),
        pytest.param(np.zeros(3, int), r"shape \(3,\)", id="one-user's-action"),
        pytest.param(np.zeros((2, 2), int), r"shape \(2, 2\)", id="too-few-slots"),
        pytest.param(np.zeros((2, 4), int), r"shape \(2, 4\)", id="too-many-slots"),
        pytest.param(np.zeros((2, 3)), r"dtype float64", id="float-dtype"),
        pytest.param(np.array([[0, 1, 2], [0, NAN, 1]]), r"contains NaN", id="nan"),
        pytest.param(np.array([[0, 1, 2], [-1, 0, 1]]), rf"outside \[0, {K}\)", id="minus-one"),
        pytest.param(np.array([[0, 1, 2], [0, 1, K]]), rf"outside \[0, {K}\)", id="index-K"),
    ],
)
def test_invalid_action_on_a_vector_env(action, match):
    envs = make_vector()
    with pytest.raises(InvalidAction, match=match) as exc:
        envs.step(action)
    assert_names_action_and_space(exc, envs.single_action_space)


@pytest.mark.parametrize(
    ("action", "match"),
    [
        pytest.param(1.5, r"dtype float64", id="float"),
        pytest.param(NAN, r"contains NaN", id="nan"),
        pytest.param(-1, rf"outside \[0, {K}\)", id="minus-one"),
        pytest.param(K, rf"outside \[0, {K}\)", id="index-K"),
        pytest.param([0, 1], r"give 1 integer candidate ind", id="two-slots"),
    ],
)
def test_invalid_action_with_slate_size_one(action, match):
    env = make_single(slate_size=1)
    with pytest.raises(InvalidAction, match=match) as exc:
        env.step(action)
    assert_names_action_and_space(exc, env.action_space)


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(np.zeros(K - 1, np.float32), id="too-few-scores"),
        pytest.param(np.zeros((2, K), np.float32), id="two-rows"),
        pytest.param(np.full(K, NAN, np.float32), id="nan"),
        pytest.param(np.full(K, np.inf, np.float32), id="inf"),
        pytest.param(np.array(["a"] * K), id="strings"),
    ],
)
def test_invalid_scores(action):
    env = make_single(action_type="scores")
    with pytest.raises(InvalidAction, match=rf"{K} finite scores") as exc:
        env.step(action)
    assert_names_action_and_space(exc, env.action_space)


def test_an_invalid_action_leaves_the_env_unchanged():
    env, twin = make_single(), make_single()
    with pytest.raises(InvalidAction):
        env.step([0, 1, K])
    _, reward, _, _, info = env.step([0, 1, 2])
    _, twin_reward, _, _, twin_info = twin.step([0, 1, 2])
    assert reward == twin_reward
    for key in ("candidate_ids", "slate_ids", "clicks"):
        np.testing.assert_array_equal(info[key], twin_info[key])


# --------------------------------------------------------------------- repeated index
def distinct_pair(candidates: np.ndarray) -> tuple[int, int]:
    """Two candidate indices showing different items."""
    j = int(np.flatnonzero(candidates != candidates[0])[0])
    return 0, j


def test_a_repeated_index_shows_the_item_once():
    env = gym.make(ENV_ID, **TINY)
    _, info = env.reset(seed=0)
    cand = info["candidate_ids"]
    i, j = distinct_pair(cand)
    _, _, _, _, info = env.step([i, i, j])
    assert info["slate_ids"].tolist() == [cand[i], -1, cand[j]]
    assert info["repeats"] == 1
    assert not info["clicks"][1], "a hidden repeat cannot be clicked"


def test_a_slate_of_one_index_three_times_shows_one_item():
    env = gym.make(ENV_ID, **TINY)
    _, info = env.reset(seed=1)
    cand = info["candidate_ids"]
    _, _, _, _, info = env.step([4, 4, 4])
    assert info["slate_ids"].tolist() == [cand[4], -1, -1]
    assert info["repeats"] == 2
    assert not info["clicks"][1:].any()


def test_repeated_indices_in_a_vector_env():
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **TINY)
    _, info = envs.reset(seed=0)
    cand = info["candidate_ids"]
    i, j = distinct_pair(cand[0])
    _, _, _, _, info = envs.step(np.array([[i, i, j], [3, 5, 7]]))
    assert info["slate_ids"][0].tolist() == [cand[0, i], -1, cand[0, j]]
    assert info["repeats"].tolist() == [1, 3 - len(set(cand[1, [3, 5, 7]].tolist()))]


# ---------------------------------------------------------------------- bad config
CONFIG_ERRORS = [
    pytest.param({"num_candidates": 0}, r"num_candidates=0", id="num_candidates=0"),
    pytest.param({"num_candidates": 2.5}, r"num_candidates=2\.5", id="num_candidates=2.5"),
    pytest.param({"slate_size": 0}, r"slate_size=0", id="slate_size=0"),
    pytest.param(
        {"n_items": 10, "num_candidates": 20},
        r"num_candidates=20 exceeds the catalog's 10 items",
        id="num_candidates>n_items",
    ),
    pytest.param(
        {"num_candidates": 5, "slate_size": 6},
        r"slate_size=6 exceeds num_candidates=5",
        id="slate_size>num_candidates",
    ),
    pytest.param({"users": "nope"}, r"unknown preset 'nope'", id="preset-nope"),
    pytest.param({"action_type": "x"}, r"action_type='x'", id="action_type-x"),
    pytest.param({"horizon_days": 0}, r"horizon_days=0", id="horizon_days=0"),
    pytest.param({"max_episode_steps": 0}, r"max_episode_steps=0", id="max_episode_steps=0"),
    pytest.param({"n_items": 0}, r"n_items=0", id="n_items=0"),
]


@pytest.mark.parametrize(("kwargs", "match"), CONFIG_ERRORS)
@pytest.mark.parametrize(
    "make",
    [RecoEnv, lambda **kw: RecoVectorEnv(num_envs=2, **kw)],
    ids=["RecoEnv", "RecoVectorEnv"],
)
def test_bad_config_raises_config_error(make, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make(**{**TINY, **kwargs})


@pytest.mark.parametrize(("kwargs", "match"), CONFIG_ERRORS)
def test_bad_config_through_make_vec(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        gym.make_vec(
            ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **{**TINY, **kwargs}
        )


@pytest.mark.parametrize(
    ("kwargs", "match"), [p for p in CONFIG_ERRORS if p.id != "max_episode_steps=0"]
)
def test_bad_config_through_gym_make(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        gym.make(ENV_ID, **{**TINY, **kwargs})


def test_gym_make_checks_its_own_max_episode_steps():
    # gym.make consumes max_episode_steps itself (a TimeLimit wrapper); it never reaches the env.
    with pytest.raises(ValueError, match=r"max_episode_steps.*0"):
        gym.make(ENV_ID, **TINY, max_episode_steps=0)


@pytest.mark.parametrize("num_envs", [0, -1, 1.5])
def test_bad_num_envs(num_envs):
    with pytest.raises(ConfigError, match=re.escape(f"num_envs={num_envs!r}")):
        RecoVectorEnv(num_envs=num_envs, **TINY)
    with pytest.raises(ConfigError, match=re.escape(f"num_envs={num_envs!r}")):
        gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **TINY)


def test_bad_autoreset_mode():
    with pytest.raises(ConfigError, match=r"autoreset_mode='sometimes'"):
        RecoVectorEnv(num_envs=2, autoreset_mode="sometimes", **TINY)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        pytest.param(
            lambda: CandidateMix(interest=1.5, popular=0, random=0),
            ConfigError,
            r"\(1\.5, 0, 0\)",
            id="mix-share-1.5",
        ),
        pytest.param(
            lambda: CandidateMix(interest=-0.2, popular=0.6, random=0.6),
            ConfigError,
            r"\(-0\.2, 0\.6, 0\.6\)",
            id="mix-share-negative",
        ),
        pytest.param(
            lambda: CandidateMix(interest=0.5, popular=0.2, random=0.2),
            ConfigError,
            r"summing to 1",
            id="mix-sum-0.9",
        ),
        pytest.param(
            lambda: UserParams(lam=1.5), ConfigError, r"UserParams\.lam=1\.5", id="lam=1.5"
        ),
        pytest.param(
            lambda: UserParams(rho=-0.1), ConfigError, r"UserParams\.rho=-0\.1", id="rho=-0.1"
        ),
        pytest.param(lambda: Catalog.synthetic(0), ConfigError, r"n_items=0", id="synthetic(0)"),
        pytest.param(
            lambda: Catalog.synthetic(10, n_topics=11),
            ConfigError,
            r"n_topics=11",
            id="more-topics-than-items",
        ),
    ],
)
def test_bad_records(build, error, match):
    with pytest.raises(error, match=match):
        build()


# ---------------------------------------------------------------- bad catalog tables
EMB = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]


@pytest.mark.parametrize(
    ("table", "kwargs", "match"),
    [
        pytest.param({"embedding": EMB}, {}, r"no 'topic' column", id="no-topic"),
        pytest.param({"topic": [0, 1, 0]}, {}, r"no 'embedding' column", id="no-embedding"),
        pytest.param(
            {"topic": [0, 1, 0], "embedding": [[1.0, 0.0], [0.0, 1.0], [NAN, 1.0]]},
            {},
            r"column 'embedding' .* row 2",
            id="nan-embedding",
        ),
        pytest.param(
            {"topic": [0, 1, 0]},
            {"embeddings": np.array([[1.0, 0], [NAN, 1], [0, 1]])},
            r"column 'embedding' .* row 1",
            id="nan-embeddings-argument",
        ),
        pytest.param(
            {"topic": [0, 1, 0], "embedding": [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]},
            {},
            r"embedding of row 1 is all zeros",
            id="zero-embedding",
        ),
        pytest.param(
            {"topic": [0, 1, 0], "embedding": EMB, "quality": [0.5, NAN, 0.5]},
            {},
            r"column 'quality' .* row 1",
            id="nan-quality",
        ),
        pytest.param(
            {"topic": [0, 1, 0], "embedding": EMB, "length": [1.0, 2.0, 0.0]},
            {},
            r"column 'length' row 2",
            id="zero-length",
        ),
        pytest.param(
            {"topic": [0, 1], "embedding": EMB},
            {},
            r"shape \(3, 2\).*\(2, dim\)",
            id="row-count-mismatch",
        ),
    ],
)
def test_bad_catalog_table(table, kwargs, match):
    with pytest.raises(CatalogError, match=match):
        Catalog.from_table(table, **kwargs)


# ------------------------------------------------------------------- step before reset
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: gym.make(ENV_ID, **TINY), id="gym.make"),
        pytest.param(lambda: RecoEnv(**TINY), id="RecoEnv"),
        pytest.param(
            lambda: gym.make_vec(
                ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **TINY
            ),
            id="make_vec",
        ),
    ],
)
def test_step_before_reset_raises_reset_needed(make):
    env = make()
    action = env.action_space.sample()
    with pytest.raises(ResetNeeded):
        env.step(action)


@pytest.mark.parametrize("wrapped", [True, False], ids=["gym.make", "RecoEnv"])
def test_step_after_the_end_raises_reset_needed(wrapped):
    env = gym.make(ENV_ID, **TINY) if wrapped else RecoEnv(**TINY)
    env.reset(seed=0)
    for _ in range(10_000):
        _, _, terminated, truncated, _ = env.step([0, 1, 2])
        if terminated or truncated:
            break
    with pytest.raises(ResetNeeded, match="reset"):
        env.step([0, 1, 2])
