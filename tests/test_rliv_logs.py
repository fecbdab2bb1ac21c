"""RLIV's offline samples from ordinary request logs: write_request_log -> Parquet in the log
schema -> samples_from_log equals what RLIVAgent.record builds during the same run."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")
pytest.importorskip("pyarrow")

import gymnasium as gym  # noqa: E402

from recoworld.agents.base import RandomRecommender  # noqa: E402
from recoworld.agents.rliv import RLIVAgent, RLIVArgs  # noqa: E402
from recoworld.agents.rliv_logs import samples_from_log, write_request_log  # noqa: E402
from recoworld.errors import ConfigError, ReplayDataError  # noqa: E402
from recoworld.replay import load_sessions  # noqa: E402
from recoworld.replay.schema import (  # noqa: E402
    OPTIONAL_NAMES,
    TrajectoryWriter,
    read_trajectories,
)

torch.set_num_threads(1)
ENV_ID = "recoworld/UserAuthor-v0"
# follows and gifts frequent enough that a tiny run has both
TINY = {
    "n_items": 300,
    "num_candidates": 20,
    "n_requests": 20,
    "funnel": {"follow_rate": 0.05, "gift_rate": 0.02},
}


def logging_env(n: int, **env) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point",
                        autoreset_mode="same_step", **{**TINY, **env})  # fmt: skip


def write_log(path, n: int, episodes: int, seed: int, rec_seed: int = 0, **env):
    venv = logging_env(n, **env)
    rec = RandomRecommender(venv.single_action_space, seed=rec_seed)
    return write_request_log(venv, rec, path, episodes=episodes, seed=seed)


def assert_same(a, b) -> None:
    for f in ("s", "r", "s2", "done"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


# ------------------------------------------------------------------- the decisive test
@pytest.mark.parametrize(
    ("mode", "env"), [("rliv", {}), ("request", {}), ("rliv", {"slate_size": 1})]
)
def test_samples_rebuilt_from_the_log_equal_the_recorded_ones(tmp_path, mode, env):
    n, episodes, seed = 4, 2, 3
    agent = RLIVAgent.for_env(ENV_ID, n, seed, RLIVArgs(hidden=8, mode=mode), **{**TINY, **env})
    recorded = agent.record(n * 20 * episodes, RandomRecommender(agent.action_space, seed=0))
    log = write_log(tmp_path / "log", n, episodes, seed, **env)
    rebuilt = samples_from_log(log, mode=mode, **{**TINY, **env})
    assert len(recorded) > 100 and (recorded.done == 1).any() and (recorded.done == 0).any()
    assert_same(rebuilt, recorded)
    df = read_trajectories(log)
    assert len(df) == n * 20 * episodes and df["user_id"].nunique() == n * episodes
    followed, gifted = np.stack(df["followed"]), np.stack(df["gifted"])
    clicks = np.stack(df["clicks"])
    assert followed.sum() > 0 and gifted.sum() > 0  # the sparse signals are exercised
    assert not (followed & ~clicks).any() and not (gifted & ~clicks).any()
    if mode == "rliv":  # every meeting ends in one sample: the signals add up to the log's
        np.testing.assert_array_equal(
            recorded.r.sum(0), [clicks.sum(), followed.sum(), gifted.sum()]
        )


def test_a_changed_log_changes_the_samples(tmp_path):
    # the rows come from the log, not from re-running the env: a follow removed from the log
    # is gone from the samples (and from the pair features of the later requests)
    log = write_log(tmp_path / "log", 4, 1, seed=3)
    df = read_trajectories(log)
    base = samples_from_log(df, **TINY)
    row = int(np.flatnonzero([f.any() for f in df["followed"]])[0])
    edited = df.copy()
    edited.at[row, "followed"] = np.zeros_like(df.at[row, "followed"])
    changed = samples_from_log(edited, **TINY)
    assert changed.r[:, 1].sum() == base.r[:, 1].sum() - 1
    assert not np.array_equal(changed.s, base.s)


def test_offline_training_on_a_request_log_beats_the_initial_policy(tmp_path):
    # as tests/test_rliv.py: a random policy's log (16 users x 5 episodes of 40 requests) ->
    # 600 offline updates on the samples rebuilt from the Parquet log
    from tests.test_rliv import mean_return

    env = {"n_requests": 40}
    agent = RLIVAgent.for_env(
        ENV_ID, 16, 0, RLIVArgs(hidden=32, learning_rate=3e-3),
        n_items=300, num_candidates=20, **env,
    )  # fmt: skip
    before = mean_return(agent, **env)
    venv = logging_env(16, funnel={}, **env)
    log = write_request_log(
        venv, RandomRecommender(venv.single_action_space, seed=0), tmp_path / "log",
        episodes=5, seed=0,
    )  # fmt: skip
    samples = samples_from_log(log, n_items=300, num_candidates=20, **env)
    agent.fit_offline(samples, n_updates=600)
    assert agent.num_timesteps == 0
    after = mean_return(agent, **env)
    assert after > 1.15 * before, (before, after)


# --------------------------------------------------------------------------- bad input
def test_a_log_without_followed_and_gifted_is_refused_with_the_fix(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    log = write_log(tmp_path / "log", 2, 1, seed=0)
    old = read_trajectories(log).drop(columns=["followed", "gifted"])
    with pytest.raises(ReplayDataError, match=r"followed.*gifted.*write_request_log"):
        samples_from_log(old, **TINY)
    (tmp_path / "old").mkdir()
    pq.write_table(pa.Table.from_pandas(old), tmp_path / "old" / "part-0000.parquet")
    with pytest.raises(ReplayDataError, match="followed"):
        samples_from_log(tmp_path / "old", **TINY)


def test_a_log_read_with_other_env_arguments_is_refused(tmp_path):
    log = write_log(tmp_path / "log", 2, 1, seed=0)
    with pytest.raises(ReplayDataError, match=r"candidate_ids.*widths \[20\].*takes 30"):
        samples_from_log(log, **{**TINY, "num_candidates": 30})
    df = read_trajectories(log)
    df.at[5, "step"] = 7  # a step logged twice, one missing
    with pytest.raises(ReplayDataError, match="from step 0 on"):
        samples_from_log(df, **TINY)


def test_write_request_log_needs_a_same_step_user_author_env(tmp_path):
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **TINY)
    rec = RandomRecommender(venv.single_action_space, seed=0)
    with pytest.raises(ConfigError, match="same_step"):
        write_request_log(venv, rec, tmp_path / "a")
    other = gym.make_vec(
        "recoworld/Engagement-v0", 2, vectorization_mode="vector_entry_point",
        autoreset_mode="same_step",
    )  # fmt: skip
    with pytest.raises(ConfigError, match="UserAuthor-v0"):
        write_request_log(other, rec, tmp_path / "b")
    with pytest.raises(ConfigError, match="episodes=0"):
        write_request_log(logging_env(2), rec, tmp_path / "c", episodes=0)


# ------------------------------------------------------------------- the schema's columns
def test_logs_with_and_without_the_pair_columns_load(tmp_path):
    from recoworld.simulation import simulate

    assert {"followed", "gifted"} <= set(OPTIONAL_NAMES)
    simulate("engagement", ("random",), n_users=4, days=1, out_dir=tmp_path / "old", n_items=200)
    old = load_sessions(tmp_path / "old" / "trajectories")
    assert old.user_id.size > 0 and "followed" not in read_trajectories(tmp_path / "old").columns
    log = write_log(tmp_path / "new", 2, 1, seed=0)
    new = load_sessions(log, n_items=300)
    assert new.user_id.size == 2 * 20
    df = read_trajectories(log).sort_values(["user_id", "step"], kind="stable")
    np.testing.assert_array_equal(new.clicks, np.stack(df["clicks"]))
    np.testing.assert_array_equal(new.candidate_ids, np.stack(df["candidate_ids"]))


def test_a_later_batch_without_the_list_columns_is_filled_with_false(tmp_path):
    log = write_log(tmp_path / "log", 2, 1, seed=0)
    df = read_trajectories(log)
    first = {c: (np.stack(df[c]) if isinstance(df[c].iloc[0], np.ndarray) else df[c].to_numpy())
             for c in df.columns}  # fmt: skip
    later = {k: v for k, v in first.items() if k not in ("followed", "gifted")}
    with TrajectoryWriter(tmp_path / "mixed") as writer:
        writer.append(first)
        writer.append(later)
    back = read_trajectories(tmp_path / "mixed")
    assert len(back) == 2 * len(df)
    np.testing.assert_array_equal(np.stack(back["followed"][len(df) :]), False)
    np.testing.assert_array_equal(np.stack(back["followed"][: len(df)]), np.stack(df["followed"]))
