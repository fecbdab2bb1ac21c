"""Stable-Baselines3 integration: the VecEnv adapter, the networks, training, loading, CLI."""

from __future__ import annotations

import importlib
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
torch = pytest.importorskip("torch")

from recoworld.agents.sb3 import (  # noqa: E402
    CandidateExtractor,
    CandidatePolicy,
    NonFiniteRewardError,
    SB3Recommender,
    SlateDistribution,
    load_policy,
    to_sb3_vec_env,
)
from recoworld.agents.sb3.extractor import extractor_kwargs  # noqa: E402
from recoworld.agents.sb3.train import ALGORITHMS, train  # noqa: E402
from recoworld.envs import RecoEnv, RecoVectorEnv  # noqa: E402
from recoworld.envs.registry import ENV_KWARGS  # noqa: E402
from recoworld.errors import ConfigError  # noqa: E402

TINY = {"n_items": 300, "num_candidates": 10, "slate_size": 2}
ENV = "recoworld/Retention-v0"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # small nets: threads only spin on a busy CI machine


def _actions(rng: np.random.Generator, n: int, k: int, slate: int) -> np.ndarray:
    return np.argsort(rng.random((n, k)), axis=1)[:, :slate]


# --- the adapter ---------------------------------------------------------------------------


def test_reset_and_step_shapes_and_types() -> None:
    venv = to_sb3_vec_env(ENV, n_envs=3, seed=0, **TINY)
    obs = venv.reset()
    assert set(obs) == {"candidates", "user", "instruction"}
    assert obs["candidates"].shape == (3, *venv.observation_space["candidates"].shape)
    for i in range(3):
        assert venv.observation_space.contains({k: v[i] for k, v in obs.items()})
    assert len(venv.reset_infos) == 3 and "candidate_ids" in venv.reset_infos[0]
    obs, rewards, dones, infos = venv.step(_actions(np.random.default_rng(0), 3, 10, 2))
    assert rewards.dtype == np.float32 and rewards.shape == (3,)
    assert dones.dtype == bool and dones.shape == (3,)
    assert isinstance(infos, list) and len(infos) == 3
    assert {"user_id", "clicks", "candidate_ids", "TimeLimit.truncated"} <= set(infos[0])
    assert isinstance(infos[0]["user_id"], int)


def test_terminal_observation_and_truncation_match_the_single_env() -> None:
    """Slot i with seed s + i is RecoEnv reset with seed s + i: the finished user's last
    observation is in terminal_observation, the next observation is the new user's first, and
    TimeLimit.truncated is set exactly for truncations that are not terminations."""
    n, seed, kwargs = 3, 5, {**TINY, "max_episode_steps": 7}
    venv = to_sb3_vec_env("recoworld/Engagement-v0", n_envs=n, seed=seed, **kwargs)
    singles = [RecoEnv(**{**ENV_KWARGS["recoworld/Engagement-v0"], **kwargs}) for _ in range(n)]
    obs = venv.reset()
    single_obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    rng = np.random.default_rng(1)
    seen = {"terminated": 0, "truncated": 0}
    for _ in range(40):
        for i in range(n):
            for key in obs:
                np.testing.assert_array_equal(obs[key][i], single_obs[i][key])
        action = _actions(rng, n, 10, 2)
        obs, rewards, dones, infos = venv.step(action)
        for i, env in enumerate(singles):
            o, r, term, trunc, _ = env.step(action[i])
            assert rewards[i] == np.float32(r)
            assert dones[i] == (term or trunc)
            assert infos[i]["TimeLimit.truncated"] == (trunc and not term)
            if term or trunc:
                seen["truncated" if infos[i]["TimeLimit.truncated"] else "terminated"] += 1
                for key in o:
                    np.testing.assert_array_equal(infos[i]["terminal_observation"][key], o[key])
                o, _ = env.reset()
            else:
                assert "terminal_observation" not in infos[i]
            single_obs[i] = o
    assert seen["terminated"] and seen["truncated"], seen


def test_seed_makes_reset_reproducible() -> None:
    venv = to_sb3_vec_env(ENV, n_envs=2, seed=None, **TINY)
    venv.seed(11)
    a = venv.reset()
    venv.reset()  # unseeded: new users
    venv.seed(11)
    b = venv.reset()
    native = RecoVectorEnv(2, users="retention", multi_session=True, **TINY)
    c, _ = native.reset(seed=11)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a[key], c[key])


def test_attributes_and_methods() -> None:
    venv = to_sb3_vec_env(ENV, n_envs=3, seed=0, **TINY)
    catalogs = venv.get_attr("catalog")
    assert len(catalogs) == 3 and catalogs[0] is venv.venv.catalog
    assert venv.get_attr("num_envs", indices=[1]) == [3]
    assert venv.has_attr("catalog") and not venv.has_attr("no_such_attribute")
    venv.set_attr("tag", "x")
    assert venv.get_attr("tag") == ["x", "x", "x"]
    with pytest.raises(ConfigError, match="share one native env"):
        venv.set_attr("tag", "y", indices=[0])
    assert venv.env_method("__str__", indices=[0, 2]) == [str(venv.venv)] * 2
    assert venv.env_is_wrapped(gym.Wrapper) == [False, False, False]
    venv.close()


def test_next_step_env_is_rejected() -> None:
    with pytest.raises(ConfigError, match="same_step"):
        to_sb3_vec_env(RecoVectorEnv(2, **TINY))


def test_non_finite_reward_names_step_and_user() -> None:
    venv = to_sb3_vec_env(ENV, n_envs=4, seed=0, **TINY)
    venv.reset()
    core, step = venv.venv.core, venv.venv.core.step

    def poisoned(action):
        reward, term, trunc, info = step(action)
        reward[2] = np.nan
        return reward, term, trunc, info

    rng = np.random.default_rng(0)
    venv.step(_actions(rng, 4, 10, 2))
    core.step = poisoned
    with pytest.raises(NonFiniteRewardError, match=r"step 2 for user slot 2 \(user_id \d+"):
        venv.step(_actions(rng, 4, 10, 2))


def test_sb3_env_checker_accepts_the_single_env() -> None:
    from stable_baselines3.common.env_checker import check_env

    check_env(RecoEnv(**TINY), warn=False)


# --- networks ------------------------------------------------------------------------------


def test_slate_distribution_is_a_distribution_over_distinct_slates() -> None:
    k, slate = 4, 2
    dist = SlateDistribution(k, slate).proba_distribution(torch.tensor([[0.5, -1.0, 2.0, 0.0]]))
    pairs = torch.tensor([[a, b] for a in range(k) for b in range(k) if a != b])
    total = dist.proba_distribution(dist.scores.expand(len(pairs), k)).log_prob(pairs).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-5)
    dist.proba_distribution(torch.randn(64, 10))
    samples = dist.sample()
    assert samples.shape == (64, 2) and bool((samples[:, 0] != samples[:, 1]).all())
    assert dist.mode().tolist() == torch.topk(dist.scores, 2).indices.tolist()


def test_candidate_policy_scores_are_permutation_equivariant() -> None:
    from stable_baselines3 import PPO

    venv = to_sb3_vec_env(ENV, n_envs=2, seed=0, **TINY)
    model = PPO(CandidatePolicy, venv, n_steps=8, batch_size=16, seed=0)
    obs = venv.reset()
    perm = np.random.default_rng(0).permutation(10)
    shuffled = {**obs, "candidates": obs["candidates"][:, perm]}
    rec = SB3Recommender(model)
    np.testing.assert_allclose(
        rec.score(shuffled, {}), rec.score(obs, {})[:, perm], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("slate_size", [2, 1])
def test_extractor_works_with_the_default_multi_input_policy(slate_size: int) -> None:
    from stable_baselines3 import PPO

    venv = to_sb3_vec_env(ENV, n_envs=2, seed=0, **{**TINY, "slate_size": slate_size})
    model = PPO(
        "MultiInputPolicy",
        venv,
        n_steps=16,
        batch_size=32,
        seed=0,
        policy_kwargs=extractor_kwargs(features_extractor_kwargs={"embed_dim": 8}),
    )
    assert isinstance(model.policy.features_extractor, CandidateExtractor)
    assert model.policy.features_extractor.features_dim == 10 * 8 + 2 * 8
    model.learn(32)
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == ((2, 2) if slate_size == 2 else (2,))


# --- training, saving, loading --------------------------------------------------------------


@pytest.mark.parametrize(
    ("algo", "slate_size", "algo_kwargs"),
    [
        ("ppo", 2, {"n_steps": 32, "batch_size": 64}),
        ("a2c", 2, {"n_steps": 8}),
        ("dqn", 1, {"learning_starts": 50, "train_freq": 4}),
    ],
)
def test_train_save_load_round_trip(
    tmp_path: Path, algo: str, slate_size: int, algo_kwargs: dict
) -> None:
    env_kwargs = {**TINY, "slate_size": slate_size}
    result = train(
        algo,
        ENV,
        256,
        seed=0,
        n_envs=4,
        out_dir=tmp_path,
        eval_episodes=2,
        checkpoint_freq=128,
        algo_kwargs=algo_kwargs,
        plot=algo == "ppo",
        **env_kwargs,
    )
    assert result.model.num_timesteps >= 256
    for name in (
        "model.zip",
        "run.json",
        "episodes.csv",
        "logs/progress.csv",
        "eval/evaluations.npz",
    ):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "checkpoints").glob("model_*_steps.zip"))
    if algo == "ppo":
        assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    assert np.isfinite(result.eval_return[0])

    venv = to_sb3_vec_env(ENV, n_envs=4, seed=3, **env_kwargs)
    obs = venv.reset()
    loaded = load_policy(result.model_path, venv)  # algorithm read from the model's metadata
    expected, _ = result.model.predict(obs, deterministic=True)
    got = SB3Recommender(loaded).recommend(obs, {})
    np.testing.assert_array_equal(got.action, expected)
    assert got.deterministic and got.propensity.shape == (4, slate_size)
    checkpoint = sorted((tmp_path / "checkpoints").glob("*.zip"))[0]
    load_policy(checkpoint, venv)  # metadata from run.json of the run folder


def test_load_names_the_space_that_differs(tmp_path: Path) -> None:
    result = train(
        "ppo",
        ENV,
        64,
        n_envs=2,
        out_dir=tmp_path,
        eval_episodes=1,
        plot=False,
        algo_kwargs={"n_steps": 32, "batch_size": 64},
        **TINY,
    )
    other_obs = RecoVectorEnv(
        2, users="retention", multi_session=True, **{**TINY, "num_candidates": 12}
    )
    with pytest.raises(ConfigError, match=r"observation space.*'candidates': saved Box.*\(10, "):
        load_policy(result.model_path, other_obs)
    other_action = RecoVectorEnv(
        2, users="retention", multi_session=True, **{**TINY, "slate_size": 3}
    )
    with pytest.raises(
        ConfigError,
        match=r"action space.*MultiDiscrete\(\[10, 10\]\).*"
        r"MultiDiscrete\(\[10, 10, 10\]\)",
    ):
        load_policy(result.model_path, other_action)
    sampled = SB3Recommender(result.model, deterministic=False)
    obs, info = RecoVectorEnv(3, users="retention", multi_session=True, **TINY).reset(seed=0)
    rec = sampled.recommend(obs, info)
    assert rec.action.shape == (3, 2) and not rec.deterministic
    assert ((rec.propensity > 0) & (rec.propensity <= 1)).all()
    assert (rec.action[:, 0] != rec.action[:, 1]).all()  # Plackett-Luce: no repeats


def test_unknown_algorithm_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown algorithm 'sac'.*'a2c', 'dqn'.*'ppo'"):
        train("sac", ENV, 100)
    assert {"ppo", "a2c", "dqn"} <= set(ALGORITHMS)


def test_dqn_on_slates_says_to_use_slate_size_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="slate_size=1"):
        train("dqn", ENV, 100, out_dir=tmp_path / "run", **TINY)
    assert not (tmp_path / "run").exists()


# --- command line --------------------------------------------------------------------------


def test_cli_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = importlib.import_module("recoworld.cli.main")
    monkeypatch.setitem(cli.SUBCOMMANDS, "train", "recoworld.cli.train")
    out, err = io.StringIO(), io.StringIO()
    args = [
        "train",
        "--algo",
        "a2c",
        "--timesteps",
        "64",
        "--n-envs",
        "2",
        "--out",
        str(tmp_path),
        "--eval-episodes",
        "1",
        "--no-plot",
        "--algo-arg",
        "n_steps=8",
    ]
    args += [f"--env-arg={k}={v}" for k, v in TINY.items()]
    with redirect_stdout(out), redirect_stderr(err):
        assert cli.main(args) == 0
    assert f"wrote {tmp_path}/" in out.getvalue() and "model.zip" in out.getvalue()
    with redirect_stdout(out), redirect_stderr(err):
        assert cli.main(["train", "--algo", "nope"]) == 2
    assert "choose one of" in err.getvalue()
