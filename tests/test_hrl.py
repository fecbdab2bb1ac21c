"""HierarchicalNoveltyAgent: shapes, decision points, advantages, save/load, learning, CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

import recoworld  # noqa: F401
from recoworld.agents.hrl import HierarchicalNoveltyAgent, HRLConfig, session_step
from recoworld.agents.hrl_rollout import high_advantages, low_advantages
from recoworld.errors import ConfigError

torch.set_num_threads(1)
ENV = "recoworld/NoveltySeeking-v0"
SMALL = {"n_items": 200, "num_candidates": 10}


def vec(n: int = 4, mode: str = "same_step", **kw: Any) -> Any:
    return gym.make_vec(
        ENV, n, vectorization_mode="vector_entry_point", autoreset_mode=mode, **SMALL, **kw
    )


class ToyNovelty(VectorEnv):
    """K candidates, half from topics new to the user (column ``F - 2``); users flip between
    wanting new and familiar items (user column 5, known to the agent) and each shown item
    of the wanted kind earns ``1 / L``. Sessions of 4 steps, episodes of 12 (same-step reset).
    Random slates earn 0.5 per step."""

    K, F, U, L = 8, 6, 12, 2

    def __init__(self, num_envs: int = 16) -> None:
        self.num_envs = num_envs
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        box = spaces.Box
        self.single_observation_space = spaces.Dict(
            {
                "candidates": box(0.0, 1.0, (self.K, self.F), np.float32),
                "user": box(0.0, 1.0, (self.U,), np.float32),
                "instruction": box(0.0, 1.0, (5,), np.float32),
            }
        )
        self.single_action_space = spaces.MultiDiscrete([self.K] * self.L)
        self.rng = np.random.default_rng(0)
        self.t = np.zeros(num_envs, np.int64)

    def _obs(self) -> dict[str, np.ndarray]:
        n = self.num_envs
        cand = self.rng.random((n, self.K, self.F)).astype(np.float32)
        cand[:, :, self.F - 2] = self.rng.random((n, self.K)) < 0.5
        self.new = cand[:, :, self.F - 2] > 0.5
        user = np.zeros((n, self.U), np.float32)
        step = self.t % 4
        user[:, 0] = step / (step + 5.0)
        user[:, 5] = self.want
        return {"candidates": cand, "user": user, "instruction": np.zeros((n, 5), np.float32)}

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t[:] = 0
        self.want = self.rng.random(self.num_envs) < 0.5
        return self._obs(), {}

    def step(self, actions: Any) -> Any:
        shown = np.take_along_axis(self.new, np.asarray(actions), 1)
        reward = (shown == self.want[:, None]).mean(1)
        self.t += 1
        done = self.t % 12 == 0
        flip = (self.t % 4 == 0) & (self.rng.random(self.num_envs) < 0.5)
        self.want = np.where(flip, ~self.want, self.want)
        return self._obs(), reward, np.zeros_like(done), done, {}


# --- configuration and bad input --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 0}, r"interval=0 must be an integer >= 1 \(M"),
        ({"interval": 2.5}, "interval=2.5 must be an integer"),
        ({"n_levels": 1}, "n_levels=1 must be an integer >= 2"),
        ({"level_bias": -1.0}, "level_bias=-1.0 must be a finite number >= 0"),
        ({"ent_coef": -0.01}, "ent_coef=-0.01 must be a finite number >= 0"),
        ({"learning_rate": 0.0}, "learning_rate=0.0 must be > 0"),
        ({"gamma": 1.5}, r"gamma=1.5 must be in \[0, 1\]"),
        ({"batch_size": 0}, "batch_size=0 must be an integer >= 1"),
        ({"level_bias": "abc"}, r"level_bias='abc' must be a number \(e.g. level_bias=1.0\)"),
        ({"gamma": "0.9x"}, "gamma='0.9x' must be a number"),
        ({"learning_rate": None}, "learning_rate=None must be a number"),
        ({"hierarchy": "yes"}, "hierarchy='yes' must be True or False"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HRLConfig(**kwargs)
    with pytest.raises(ConfigError, match=message):
        HierarchicalNoveltyAgent(vec(2), **kwargs)


def test_bad_env_and_fields() -> None:
    with pytest.raises(ConfigError, match=r"unknown env id 'recoworld/Nope-v0'.*NoveltySeeking"):
        HierarchicalNoveltyAgent("recoworld/Nope-v0")
    with pytest.raises(ConfigError, match=r"unknown HRLConfig fields \['levels'\]"):
        HierarchicalNoveltyAgent(vec(2), levels=3)
    only = ["candidates"]
    no_user = gym.wrappers.vector.FilterObservation(vec(2, "next_step"), filter_keys=only)
    with pytest.raises(ConfigError, match=r"lacks \['user', 'instruction'\].*novel/familiar"):
        HierarchicalNoveltyAgent(no_user)
    with pytest.raises(ConfigError, match="needs a vector env"):
        HierarchicalNoveltyAgent(gym.make(ENV, **SMALL)).learn(64)
    with pytest.raises(ConfigError, match="total_timesteps=0"):
        HierarchicalNoveltyAgent(vec(2)).learn(0)


# --- acting -------------------------------------------------------------------------------


@pytest.mark.parametrize("hierarchy", [True, False])
def test_shapes_and_propensities(hierarchy: bool) -> None:
    env = vec(4)
    agent = HierarchicalNoveltyAgent(env, hierarchy=hierarchy, deterministic=False)
    obs, info = env.reset(seed=0)
    out = agent.act(obs)
    assert out["action"].shape == (4, 5) and out["action"].dtype == np.int64
    assert all(len(set(row)) == 5 for row in out["action"])  # Plackett-Luce: no repeats
    for key in ("level", "decide", "logp", "value", "logp_high", "value_high"):
        assert out[key].shape == (4,)
    assert np.isfinite(out["logp"]).all() and (out["logp"] < 0).all()
    agent.reset(None)
    rec = agent.recommend(obs, info)
    assert rec.action.shape == (4, 5) and rec.propensity.shape == (4, 5)
    assert not rec.deterministic and ((rec.propensity > 0) & (rec.propensity <= 1)).all()
    assert rec.extras["level"].shape == (4,)
    env.step(rec.action)  # a valid action
    agent.deterministic = True
    top = agent.recommend(obs, info)
    assert top.deterministic and (top.propensity == 1).all()


def test_mixture_propensities_sum_to_one() -> None:
    """At a decision point the slot probability mixes the levels; over all K candidates of a
    one-item slate it sums to 1 (exactly the policy's marginal)."""
    env = gym.make_vec(ENV, 3, vectorization_mode="vector_entry_point", slate_size=1, **SMALL)
    agent = HierarchicalNoveltyAgent(env, deterministic=False, level_bias=2.0)
    obs, _ = env.reset(seed=1)
    decide = np.array([True, True, False])
    agent.level = np.array([0, 1, 2])
    total = np.zeros(3)
    for k in range(10):
        out = {"action": np.full((3, 1), k), "decide": decide}
        total += agent._propensity(obs, out, agent.level.copy())[:, 0]
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


def test_high_level_acts_only_at_decision_points() -> None:
    env = vec(6, mode="next_step")
    agent = HierarchicalNoveltyAgent(env, interval=3, n_levels=4)
    obs, _ = env.reset(seed=2)
    prev = None
    n_decisions = 0
    for _ in range(60):
        true_step = env.unwrapped.core.state.step.copy()
        np.testing.assert_array_equal(session_step(obs["user"]), true_step)
        had = agent.level.copy() if agent.level.size else np.full(6, -1)
        out = agent.act(obs)
        expected = (true_step % 3 == 0) | (had < 0)
        np.testing.assert_array_equal(out["decide"], expected)
        if prev is not None:  # between decisions the level is kept
            keep = ~out["decide"]
            np.testing.assert_array_equal(out["level"][keep], prev[keep])
        prev = out["level"].copy()
        n_decisions += int(out["decide"].sum())
        obs, _, term, trunc, _info = env.step(out["action"])
        agent.reset(term | trunc)
    assert 6 < n_decisions < 6 * 60 / 2  # some, and far fewer than one per step


def test_flat_agent_has_no_high_level_decisions() -> None:
    env = vec(3)
    agent = HierarchicalNoveltyAgent(env, hierarchy=False)
    obs, _ = env.reset(seed=0)
    assert not agent.act(obs)["decide"].any()


# --- advantages ---------------------------------------------------------------------------


def test_high_level_smdp_advantages() -> None:
    r = np.ones((6, 1))
    dec = np.array([[1], [0], [0], [1], [0], [0]], bool)
    zeros = np.zeros((6, 1))
    seg = 1 + 0.5 + 0.25  # three steps of reward 1 at gamma 0.5
    a = high_advantages(r, dec, zeros, zeros, np.zeros(1), 0.5, 1.0)
    np.testing.assert_allclose(a[:, 0], [seg + 0.125 * seg, 0, 0, seg, 0, 0])
    a = high_advantages(r, dec, zeros, zeros, np.zeros(1), 0.5, 0.0)
    np.testing.assert_allclose(a[[0, 3], 0], [seg, seg])
    # bootstrap: value 2 at the second decision and 4 after the rollout
    v = np.zeros((6, 1))
    v[3] = 2.0
    a = high_advantages(r, dec, v, zeros, np.array([4.0]), 0.5, 0.0)
    np.testing.assert_allclose(a[[0, 3], 0], [seg + 0.125 * 2.0, seg + 0.125 * 4.0 - 2.0])
    done = zeros.copy()
    done[1] = 1.0  # the episode ends after two steps: no bootstrap past it
    a = high_advantages(r, dec, v, done, np.array([4.0]), 0.5, 1.0)
    assert a[0, 0] == pytest.approx(1.5)


def test_low_level_gae() -> None:
    r = np.array([[1.0], [1.0], [1.0]])
    v = np.zeros((3, 1))
    done = np.array([[0.0], [1.0], [0.0]])
    a = low_advantages(r, v, done, np.array([10.0]), 0.9, 1.0)
    np.testing.assert_allclose(a[:, 0], [1.9, 1.0, 1.0 + 9.0])


# --- saving and learning ------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    env = vec(4)
    agent = HierarchicalNoveltyAgent(env, n_steps=8, seed=3)
    agent.learn(64)
    path = agent.save(tmp_path / "hrl")
    assert path.name == "hrl.zip"
    obs, info = env.reset(seed=5)
    want = agent.recommend(obs, info).action
    for target in (env, None):
        loaded = HierarchicalNoveltyAgent.load(path, target)
        assert loaded.config == agent.config
        np.testing.assert_array_equal(loaded.recommend(obs, info).action, want)
    with pytest.raises(ConfigError, match="'candidates' of the saved model has shape"):
        HierarchicalNoveltyAgent.load(path, gym.make(ENV, n_items=200, num_candidates=12))
    other = gym.make_vec(ENV, 2, vectorization_mode="vector_entry_point", n_items=200)
    obs, info = other.reset(seed=0)
    with pytest.raises(ConfigError, match=r"'candidates' has shape \(50, 37\) per user"):
        HierarchicalNoveltyAgent.load(path).recommend(obs, info)  # built for K = 10
    with pytest.raises(ConfigError, match="no saved HRL model"):
        HierarchicalNoveltyAgent.load(tmp_path / "missing.zip")


def test_same_seed_same_training() -> None:
    runs = []
    for _ in range(2):
        agent = HierarchicalNoveltyAgent(vec(4), n_steps=8, seed=11)
        agent.learn(64)
        runs.append(agent.history[-1])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("hierarchy", [True, False])
def test_tiny_training_improves_on_a_toy_setting(hierarchy: bool) -> None:
    agent = HierarchicalNoveltyAgent(
        ToyNovelty(16), hierarchy=hierarchy, n_steps=16, interval=4, learning_rate=3e-3,
        normalize_reward=False, seed=0,
    )  # fmt: skip
    agent.learn(16 * 16 * 25)
    first = agent.history[0]["reward_per_step"]  # the initial policy's rollout
    last = np.mean([h["reward_per_step"] for h in agent.history[-3:]])
    assert first == pytest.approx(0.5, abs=0.06)
    assert last > first + 0.15, (first, last)


def test_cli_train_and_evaluate(tmp_path: Path) -> None:
    from recoworld.cli.main import main
    from recoworld.evaluation import evaluate

    out = tmp_path / "run"
    args = ["train", "--algo", "hrl", "--env", ENV, "--timesteps", "128", "--n-envs", "4"]
    args += ["--eval-episodes", "2", "--no-plot", "--out", str(out)]
    args += ["--env-arg", "n_items=200", "--env-arg", "num_candidates=10"]
    args += ["--algo-arg", "interval=2", "--env-arg", "max_episode_steps=40"]
    assert main(args) == 0
    assert (out / "model.zip").is_file() and (out / "run.json").is_file()
    loaded = HierarchicalNoveltyAgent.load(out / "model.zip")
    assert loaded.config.interval == 2 and loaded.config.hierarchy
    res = evaluate(
        [out / "model.zip", "random"], env_id=ENV, n_users=4, seeds=[0], max_episode_steps=40,
        **SMALL,
    )  # fmt: skip
    assert res.episodes("policy:model") == 4


def test_registered_algorithms_build_on_an_sb3_env() -> None:
    from stable_baselines3.common.vec_env import VecNormalize

    from recoworld.agents.sb3.train import get_algorithm
    from recoworld.agents.sb3.vec_env import RecoSB3VecEnv

    env = VecNormalize(RecoSB3VecEnv(vec(4)), norm_obs=False)
    flat = get_algorithm("hrl_flat").make(env, seed=0, total_timesteps=64)
    assert not flat.config.hierarchy and not flat.config.normalize_reward  # VecNormalize does
    hrl = get_algorithm("hrl").make(env, seed=0, total_timesteps=64, interval=3)
    assert hrl.config.hierarchy and hrl.config.interval == 3 and hrl.config.n_steps == 16
    hrl.learn(64)
    assert hrl.num_timesteps == 64
    with pytest.raises(ConfigError, match="own networks"):
        get_algorithm("hrl").make(env, seed=0, policy_kwargs={"net_arch": [8]})
