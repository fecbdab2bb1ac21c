"""Conformance of every registered recoworld env: Gymnasium's and recoworld's checks,
vector == single, determinism, Stable-Baselines3's checker and the README quickstart.

The last section checks the checks: deliberately broken envs must fail them.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import recoworld
from recoworld.envs import RecoEnv, RecoVectorEnv
from recoworld.testing import (
    check_determinism,
    check_env,
    check_vector_matches_single,
    random_action,
)

# Tiny catalog and a 3-day horizon, so multi-session episodes end within a few dozen steps.
SMALL = {"n_items": 300, "num_candidates": 20, "slate_size": 3, "horizon_days": 3}
ENV_IDS = sorted(i for i in gym.registry if i.startswith("recoworld/"))
# Extra arguments an id needs to be made at all (e.g. a log path), or to end episodes soon.
ID_KWARGS: dict[str, dict[str, Any]] = {"recoworld/UserAuthor-v0": {"n_requests": 30}}


@functools.cache
def _replay_log() -> str:
    """A small logged run for Replay-v0 (made once per test session)."""
    out = tempfile.mkdtemp(prefix="replay-log-")
    recoworld.simulate(recommenders=("random",), n_users=20, days=2, out_dir=out, **SMALL)
    return f"{out}/trajectories/random"


@functools.cache
def _fake_llm() -> Any:
    """A local fake LLM server for LLMUsers-v0 (started once per test session; its daemon
    thread ends with the test process)."""
    from recoworld.testing.llm_server import FakeLLMServer

    return FakeLLMServer()


def kwargs_for(env_id: str, **extra: Any) -> dict[str, Any]:
    if env_id == "recoworld/Replay-v0":
        return {"log_path": _replay_log(), **extra}
    if env_id == "recoworld/LLMUsers-v0":
        llm = {"llm_base_url": _fake_llm().base_url, "llm_model": "fake-persona"}
        return {**SMALL, **llm, **ID_KWARGS.get(env_id, {}), **extra}
    return {**SMALL, **ID_KWARGS.get(env_id, {}), **extra}


def test_every_preset_id_is_registered():
    assert {
        "recoworld/Engagement-v0",
        "recoworld/NoveltySeeking-v0",
        "recoworld/Retention-v0",
    } <= set(ENV_IDS)


# ------------------------------------------------------------------ the three checks
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env(env_id):
    check_env(env_id, **kwargs_for(env_id))


@pytest.mark.parametrize("autoreset_mode", ["next_step", "same_step"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_vector_matches_single(env_id, autoreset_mode):
    ended = check_vector_matches_single(
        env_id, num_envs=4, n_steps=80, autoreset_mode=autoreset_mode, **kwargs_for(env_id)
    )
    assert ended > 0, "no episode ended, so autoreset was not compared"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_determinism(env_id):
    check_determinism(env_id, n_steps=100, **kwargs_for(env_id))


@pytest.mark.parametrize("num_envs", [1, 3, 8])
def test_vector_matches_single_for_any_batch_size(num_envs):
    ended = check_vector_matches_single(
        "recoworld/Engagement-v0", num_envs=num_envs, n_steps=60, seed=7, **SMALL
    )
    assert ended > 0


@pytest.mark.parametrize("autoreset_mode", ["next_step", "same_step"])
def test_vector_matches_single_with_a_step_cap_that_never_meets_a_leave(autoreset_mode):
    # Truncation by the step cap alone (Retention users rarely leave in 5 steps).
    ended = check_vector_matches_single(
        "recoworld/Retention-v0",
        n_steps=60,
        seed=0,
        max_episode_steps=5,
        autoreset_mode=autoreset_mode,
        **SMALL,
    )
    assert ended > 0


def test_vector_matches_single_when_the_step_cap_meets_a_leave():
    check_vector_matches_single(
        "recoworld/Engagement-v0", n_steps=150, max_episode_steps=5, **SMALL
    )


def test_vector_slot_i_is_the_single_env_seeded_seed_plus_i():
    venv = gym.make_vec(
        "recoworld/Engagement-v0", num_envs=3, vectorization_mode="vector_entry_point", **SMALL
    )
    single = gym.make("recoworld/Engagement-v0", **SMALL)
    obs, info = venv.reset(seed=10)
    obs2, info2 = single.reset(seed=12)
    np.testing.assert_array_equal(obs["user"][2], obs2["user"])
    np.testing.assert_array_equal(info["candidate_ids"][2], info2["candidate_ids"])


# --------------------------------------------------------------- action variants
def test_scores_action_type_passes_check_env():
    check_env(
        "recoworld/Engagement-v0", **kwargs_for("recoworld/Engagement-v0", action_type="scores")
    )


def test_scores_action_space_and_vector_match():
    env = gym.make(
        "recoworld/Engagement-v0", **kwargs_for("recoworld/Engagement-v0", action_type="scores")
    )
    assert env.action_space == spaces.Box(-1.0, 1.0, (20,), np.float32)
    ended = check_vector_matches_single(
        "recoworld/Engagement-v0",
        n_steps=100,
        **kwargs_for("recoworld/Engagement-v0", action_type="scores"),
    )
    assert ended > 0


def test_scores_show_the_top_candidates_in_score_order():
    env = gym.make(
        "recoworld/Engagement-v0", **kwargs_for("recoworld/Engagement-v0", action_type="scores")
    )
    _, info = env.reset(seed=3)
    scores = np.linspace(-1, 1, 20, dtype=np.float32)
    _, _, _, _, step_info = env.step(scores)
    np.testing.assert_array_equal(step_info["slate_ids"], info["candidate_ids"][[19, 18, 17]])


def test_slate_size_one_gives_a_discrete_action_space():
    env = gym.make("recoworld/Engagement-v0", **kwargs_for("recoworld/Engagement-v0", slate_size=1))
    assert env.action_space == spaces.Discrete(20)
    _, info = env.reset(seed=0)
    _, reward, _, _, step_info = env.step(4)
    assert step_info["slate_ids"].tolist() == [info["candidate_ids"][4]]
    assert np.isfinite(reward)
    _, _, _, _, step_info = env.step(np.int64(0))  # numpy integers work too
    assert step_info["slate_ids"].shape == (1,)


def test_slate_size_one_passes_check_env():
    check_env("recoworld/Retention-v0", **kwargs_for("recoworld/Retention-v0", slate_size=1))


def test_slate_size_one_vector_matches_single():
    assert (
        check_vector_matches_single(
            "recoworld/Engagement-v0",
            n_steps=100,
            **kwargs_for("recoworld/Engagement-v0", slate_size=1),
        )
        > 0
    )


# ------------------------------------------------------------------ Stable-Baselines3
@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.filterwarnings("ignore:Your observation candidates has an unconventional shape")
@pytest.mark.filterwarnings("error::UserWarning")
def test_sb3_check_env(env_id):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    # Dict of Box is supported as is; the 2-D candidates table only draws SB3's advice to
    # flatten it (MultiInputPolicy flattens it anyway).
    sb3_checker.check_env(gym.make(env_id, **kwargs_for(env_id)))


@pytest.mark.filterwarnings("ignore:Your observation candidates has an unconventional shape")
@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("extra", [{"slate_size": 1}, {"action_type": "scores"}])
def test_sb3_check_env_action_variants(extra):
    sb3_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3_checker.check_env(
        gym.make("recoworld/Engagement-v0", **kwargs_for("recoworld/Engagement-v0", **extra))
    )


# -------------------------------------------------------------------- quickstart
def test_readme_quickstart_block_runs(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code, "README.md has no python block under '## Quickstart'"
    exec(compile(code.group(1), "README.md#quickstart", "exec"), {})
    assert capsys.readouterr().out.strip(), "the quickstart prints nothing"


def test_quickstart_single():
    env = gym.make("recoworld:recoworld/Retention-v0")
    obs, info = env.reset(seed=0)
    total, users = 0.0, {info["user_id"]}
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        if terminated or truncated:
            obs, info = env.reset()
        users.add(info["user_id"])
    assert np.isfinite(total) and len(users) >= 1
    assert env.observation_space.contains(obs)


def test_quickstart_vector():
    envs = gym.make_vec(
        "recoworld/Retention-v0", num_envs=16, vectorization_mode="vector_entry_point"
    )
    assert isinstance(envs.unwrapped, RecoVectorEnv)
    obs, info = envs.reset(seed=0)
    assert obs["candidates"].shape[0] == 16
    for _ in range(100):
        obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert rewards.shape == (16,) and np.isfinite(rewards).all()
        assert terminated.shape == truncated.shape == (16,)
        assert info["candidate_ids"].shape == (16, envs.single_action_space.nvec[0])
    assert envs.observation_space.contains(obs)


def test_module_prefixed_id_works_without_importing_recoworld():
    code = textwrap.dedent("""
        import sys
        import gymnasium as gym
        assert "recoworld" not in sys.modules
        env = gym.make("recoworld:recoworld/Retention-v0", n_items=300, num_candidates=20)
        env.reset(seed=0)
        for _ in range(100):
            *_, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        print(type(env.unwrapped).__name__)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "RecoEnv"


def test_register_envs_is_idempotent():
    before = {i: gym.registry[i] for i in ENV_IDS}
    recoworld.register_envs()
    assert {i: gym.registry[i] for i in ENV_IDS} == before


# ------------------------------------------------------------ the checks catch bugs
class LeakyEnv(RecoEnv):
    """Shows the user's hidden novelty trait in the observation."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.observation_space = spaces.Dict(
            {**self.observation_space.spaces, "novelty": spaces.Box(0, 1, (1,), np.float32)}
        )

    def reset(self, **kwargs: Any) -> Any:
        obs, info = super().reset(**kwargs)
        return {**obs, "novelty": np.full(1, 0.5, np.float32)}, info

    def step(self, action: Any) -> Any:
        obs, *rest = super().step(action)
        return {**obs, "novelty": np.full(1, 0.5, np.float32)}, *rest


class SatisfactionLeakEnv(RecoEnv):
    """Writes the hidden satisfaction into the first user column."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        observe = self.core.observe

        def leaky() -> dict[str, np.ndarray]:
            obs = observe()
            obs["user"][:, 0] = np.clip(self.core.state.satisfaction, 0, 1)
            return obs

        self.core.observe = leaky


class EndlessEnv(RecoEnv):
    """Lets the agent step on after the episode ended."""

    def step(self, action: Any) -> Any:
        out = super().step(action)
        self._needs_reset = False
        return out


class NoisyEnv(RecoEnv):
    """Adds reward noise from OS entropy: not reproducible."""

    def step(self, action: Any) -> Any:
        obs, reward, *rest = super().step(action)
        return obs, reward + float(np.random.default_rng().normal()), *rest


class SeedBlindEnv(RecoEnv):
    """Ignores the seed it is given."""

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        return super().reset(seed=0 if seed is not None else None, options=options)


class OffByOneVectorEnv(RecoVectorEnv):
    """Pays slot 1 a little more than its single-env twin."""

    def step(self, actions: Any) -> Any:
        obs, reward, *rest = super().step(actions)
        reward[1] += 1e-3
        return obs, reward, *rest


@pytest.fixture
def broken_id():
    """Register a test-only id with the given entry points; unregister afterwards."""
    made: list[str] = []

    def register(entry_point: Any, vector_entry_point: Any = RecoVectorEnv) -> str:
        env_id = f"recoworld_test/Broken{len(made)}-v0"
        gym.register(
            id=env_id,
            entry_point=entry_point,
            vector_entry_point=vector_entry_point,
            kwargs={"users": "engagement"},
        )
        made.append(env_id)
        return env_id

    yield register
    for env_id in made:
        del gym.registry[env_id]


@pytest.mark.parametrize(
    ("env_cls", "message"),
    [
        (LeakyEnv, "leak hidden user state"),
        (SatisfactionLeakEnv, "depends on the hidden user state 'satisfaction'"),
        (EndlessEnv, "did not raise gymnasium.error.ResetNeeded"),
    ],
)
def test_check_env_catches(env_cls, message):
    with pytest.raises(AssertionError, match=message):
        check_env(env_cls(**SMALL))


def test_check_env_takes_arguments_only_with_an_id():
    with pytest.raises(TypeError, match="only be given with an env id"):
        check_env(RecoEnv(**SMALL), n_items=10)


@pytest.mark.parametrize(
    ("env_cls", "message"),
    [
        (NoisyEnv, "trajectories differ"),
        (SeedBlindEnv, "identical trajectories"),
    ],
)
def test_check_determinism_catches(broken_id, env_cls, message):
    with pytest.raises(AssertionError, match=message):
        check_determinism(broken_id(env_cls), n_steps=20, **SMALL)


def test_check_vector_matches_single_catches_a_reward_mismatch(broken_id):
    env_id = broken_id(RecoEnv, OffByOneVectorEnv)
    with pytest.raises(AssertionError, match=r"step 0, env 1 .* vector reward"):
        check_vector_matches_single(env_id, num_envs=2, n_steps=5, **SMALL)


def test_random_action_is_in_the_space():
    rng = np.random.default_rng(0)
    for space in (
        spaces.Discrete(5),
        spaces.MultiDiscrete([5, 5]),
        spaces.Box(-1, 1, (5,), np.float32),
    ):
        assert all(space.contains(random_action(space, rng)) for _ in range(20))
    with pytest.raises(TypeError, match="no random actions"):
        random_action(spaces.Text(5), rng)
