"""Exploration reward terms (diversity, novelty, serendipity) and their wrappers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import recoworld  # noqa: F401
from recoworld.catalog import Catalog
from recoworld.envs.exploration import (
    ExplorationReward,
    ExplorationTracker,
    ExplorationWeights,
    VectorExplorationReward,
    exploration_reward,
)
from recoworld.errors import ConfigError

ENV = "recoworld/NoveltySeeking-v0"
SMALL = {"n_items": 200, "num_candidates": 10}


def six_items() -> Catalog:
    """Items 0..5 in topics 0, 0, 1, 1, 2, 2."""
    emb = np.eye(6, 4, dtype=np.float32) + 0.1
    return Catalog.from_table({"topic": np.array([0, 0, 1, 1, 2, 2])}, embeddings=emb)


def test_terms_on_hand_made_slates() -> None:
    tr = ExplorationTracker(six_items(), 2)
    tr.start_users(np.ones(2, bool))
    top = np.log2(60.0)  # self-information of an item nobody consumed: p floored at 1 / (10 * 6)
    t = tr.terms(np.array([[0, 1, 2], [0, 2, 4]]), np.array([2, -1]))
    # slate 0: topics (0, 0, 1): one same-topic pair of three -> 1 - 1/3; slate 1: all differ
    np.testing.assert_allclose(t["diversity"], [2 / 3, 1.0])
    np.testing.assert_allclose(t["novelty"], [1.0, 1.0])  # nothing consumed yet
    np.testing.assert_array_equal(t["serendipity"], [1.0, 0.0])  # topic 1 is new to user 0
    t = tr.terms(np.array([[2, 3, -1], [2, 5, -1]]), np.array([3, 2]))
    np.testing.assert_allclose(t["diversity"], [0.0, 1.0])  # (1, 1) and (1, 2)
    # item 2 was consumed by 1 of 2 users: p = 1/2, one bit; items 3 and 5 by nobody
    np.testing.assert_allclose(t["novelty"], [(1 + top) / 2 / top] * 2)
    # user 0 clicks topic 1 again (not serendipitous); user 1 meets topic 1 for the first time
    np.testing.assert_array_equal(t["serendipity"], [0.0, 1.0])
    tr.terms(np.array([[2, -1, -1], [-1, -1, -1]]), np.array([2, -1]))
    # each user counts once per item: item 2 has 2 consumers of 2 users, item 3 one
    np.testing.assert_allclose(tr.item_probability(), [0, 0, 1.0, 0.5, 0, 0])
    t = tr.terms(np.array([[2, 3, -1], [-1, -1, -1]]), np.array([-1, -1]))
    np.testing.assert_allclose(t["novelty"], [(0 + 1) / 2 / top, 0.0])
    np.testing.assert_allclose(t["diversity"], [0.0, 0.0])  # one item or none: 0
    tr.start_users(np.array([True, False]))  # a new user in row 0 has consumed nothing
    assert tr.users_seen == 3
    t = tr.terms(np.array([[0, 1, 2], [0, 1, 2]]), np.array([2, 2]))
    np.testing.assert_array_equal(t["serendipity"], [1.0, 0.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"diversity": -0.1}, "diversity=-0.1 is negative"),
        ({"novelty": float("nan")}, "novelty=nan must be a finite number"),
        ({"serendipity": True}, "serendipity=True must be a finite number"),
    ],
)
def test_bad_weights(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExplorationWeights(**kwargs)
    with pytest.raises(ConfigError, match=message):
        exploration_reward(gym.make(ENV, **SMALL), **kwargs)


def test_wrappers_refuse_the_wrong_env() -> None:
    with pytest.raises(ConfigError, match="catalog"):
        ExplorationReward(gym.make("CartPole-v1"))
    with pytest.raises(ConfigError, match="use VectorExplorationReward"):
        ExplorationReward(gym.make_vec(ENV, 2, vectorization_mode="vector_entry_point", **SMALL))
    with pytest.raises(ConfigError, match="use ExplorationReward"):
        VectorExplorationReward(gym.make(ENV, **SMALL))  # type: ignore[arg-type]


def test_single_env_wrapper_adds_the_weighted_terms() -> None:
    w = ExplorationWeights(diversity=0.5, novelty=0.25, serendipity=2.0)
    env = exploration_reward(gym.make(ENV, **SMALL), weights=w)
    bare = gym.make(ENV, **SMALL)
    env.reset(seed=3)
    bare.reset(seed=3)
    rng = np.random.default_rng(0)
    seen_serendipity = 0.0
    for _ in range(40):
        a = rng.permutation(10)[:5]
        _, r, term, trunc, info = env.step(a)
        _, r_bare, *_ = bare.step(a)
        assert info["env_reward"] == pytest.approx(r_bare)
        terms = [info[f"exploration_{t}"] for t in ("diversity", "novelty", "serendipity")]
        assert all(0.0 <= x <= 1.0 for x in terms)
        assert r == pytest.approx(r_bare + 0.5 * terms[0] + 0.25 * terms[1] + 2.0 * terms[2])
        seen_serendipity += terms[2]
        if term or trunc:
            break
    assert seen_serendipity >= 1  # the first click of an episode is always on a new topic


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_vector_wrapper_matches_single_and_restarts_users(mode: str) -> None:
    n = 3
    venv = VectorExplorationReward(
        gym.make_vec(
            ENV, n, vectorization_mode="vector_entry_point", autoreset_mode=mode,
            max_episode_steps=5, **SMALL,
        ),
        diversity=1.0,
    )  # fmt: skip
    single = ExplorationReward(gym.make(ENV, max_episode_steps=5, **SMALL))
    venv.reset(seed=7)
    single.reset(seed=7)  # sub-env 0 of the vector env is this user
    rng = np.random.default_rng(1)
    for step in range(12):
        a = np.stack([rng.permutation(10)[:5] for _ in range(n)])
        _, r, _, _, info = venv.step(a)
        np.testing.assert_allclose(r, info["env_reward"] + info["exploration_diversity"], 1e-6)
        if step < 5:  # the first user of slot 0 (same actions, same terms as the single env)
            _, _, _, _, s_info = single.step(a[0])
            for t in ("diversity", "serendipity"):
                assert info[f"exploration_{t}"][0] == pytest.approx(s_info[f"exploration_{t}"])
    # the 5-step cap ends every episode twice in 12 steps: three users per slot
    assert venv.tracker.users_seen == 3 * n
