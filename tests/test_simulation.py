"""Tests for recoworld.simulation and the log schema it writes (tiny: 200 items, 60 users)."""

import json

import numpy as np
import pytest

from recoworld.errors import ConfigError, ReplayDataError
from recoworld.replay import COLUMN_NAMES, TrajectoryWriter, pyarrow_schema, read_trajectories
from recoworld.simulation import DAILY_METRICS, SUMMARY_METRICS, simulate

pq = pytest.importorskip("pyarrow.parquet")

TINY = {"n_items": 200, "n_users": 60, "days": 4}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return simulate(seed=1, out_dir=out, **TINY)


def test_same_seed_gives_identical_results(run):
    again = simulate(seed=1, **TINY)
    assert again.summary == run.summary
    for name, daily in run.daily.items():
        for metric, values in daily.items():
            np.testing.assert_array_equal(again.daily[name][metric], values)


def test_another_seed_gives_other_users(run):
    assert simulate(seed=2, **TINY).summary != run.summary


def test_metrics_cover_every_day_and_recommender(run):
    assert list(run.summary) == ["random", "popularity"]
    for name in run.summary:
        assert list(run.summary[name]) == list(SUMMARY_METRICS)
        assert set(run.daily[name]) == set(DAILY_METRICS)
        assert all(v.shape == (TINY["days"],) for v in run.daily[name].values())


def test_retention_starts_at_one_and_stays_a_share(run):
    for daily in run.daily.values():
        curve = daily["retention"]
        assert curve[0] == 1.0
        assert ((curve >= 0) & (curve <= 1)).all()
        np.testing.assert_allclose(curve, daily["active_users"] / TINY["n_users"])


def test_recommenders_meet_the_same_users(run):
    df = read_trajectories(run.out_dir / "trajectories")
    first = df[(df.day == 0) & (df.step == 0)].sort_values(["recommender", "user_id"])
    by_rec = {name: g for name, g in first.groupby("recommender")}
    for g in by_rec.values():
        np.testing.assert_array_equal(g.user_id, np.arange(TINY["n_users"]))
    # common random numbers: the same users get the same first candidates
    np.testing.assert_array_equal(
        np.stack(by_rec["random"].candidate_ids), np.stack(by_rec["popularity"].candidate_ids)
    )


def test_trajectories_round_trip(run):
    out = run.out_dir
    assert (out / "simulation.png").is_file()
    saved = json.loads((out / "summary.json").read_text())
    assert saved["summary"] == run.summary and saved["settings"]["n_users"] == TINY["n_users"]
    for name, summary in run.summary.items():
        parts = sorted((out / "trajectories" / name).glob("part-*.parquet"))
        assert 1 <= len(parts) <= TINY["days"]
        for part in parts:
            assert pq.read_schema(part).equals(pyarrow_schema())
        df = read_trajectories(out / "trajectories" / name)
        assert list(df.columns) == list(COLUMN_NAMES)
        assert len(df) == summary["steps"]
        assert df.groupby(["user_id", "session"]).ngroups == summary["sessions"]
        assert np.stack(df.clicks).sum() == summary["clicks"]
        slates = np.stack(df.slate_ids)
        assert slates.shape == (len(df), 5) and np.stack(df.candidate_ids).shape[1] == 50
        clicked = df.clicked.to_numpy() >= 0
        assert (slates[clicked] == df.clicked.to_numpy()[clicked, None]).any(1).all()
        assert (df.return_days[~df.left] == -1).all() and (df.return_days[df.left] != 0).all()
        assert ((df.instruction != "") == (df.instruction_kind > 0)).all()
        assert df.day.between(0, TINY["days"] - 1).all()
    dtypes = read_trajectories(out / "trajectories").dtypes
    for col, dtype in [
        ("user_id", "int64"),
        ("session", "int32"),
        ("day", "int32"),
        ("step", "int32"),
        ("clicked", "int32"),
        ("watch_time", "float32"),
        ("watch_fraction", "float32"),
        ("liked", "bool"),
        ("left", "bool"),
        ("return_days", "int32"),
        ("churned", "bool"),
        ("reward", "float32"),
        ("instruction_kind", "int8"),
    ]:
        assert dtypes[col] == dtype, col


def test_propensities_are_logged(run):
    df = read_trajectories(run.out_dir / "trajectories")
    prop = {name: np.stack(g.propensity) for name, g in df.groupby("recommender")}
    np.testing.assert_allclose(prop["random"][0], 1 / (50 - np.arange(5)), rtol=1e-6)
    assert (prop["popularity"] == 1).all()


def test_interrupted_run_leaves_only_finished_days(tmp_path):
    def stop_on_day_two(done, total, label):
        assert total == 2 * TINY["days"]
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate(seed=1, out_dir=tmp_path, progress=stop_on_day_two, **TINY)
    parts = sorted((tmp_path / "trajectories").rglob("*"))
    assert [p.name for p in parts if p.is_file()] == ["part-0000.parquet", "part-0001.parquet"]
    df = read_trajectories(tmp_path / "trajectories")
    assert set(df.day) == {0, 1} and set(df.recommender) == {"random"}
    assert not (tmp_path / "summary.json").exists()


def test_progress_is_called_once_per_day_and_recommender():
    calls = []
    simulate(seed=1, recommenders=("random",), progress=lambda *a: calls.append(a), **TINY)
    assert [c[:2] for c in calls] == [(d + 1, 4) for d in range(4)]
    assert calls[-1][2] == "random day 4/4"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_users": 0}, "n_users=0 must be a positive integer"),
        ({"days": 1.5}, "days=1.5 must be a positive integer"),
        ({"users": "grumpy"}, "unknown preset 'grumpy'"),
        ({"recommenders": ("random", "oracle9")}, "unknown recommender 'oracle9'"),
        ({"recommenders": ("random", "random")}, "repeat a name"),
        ({"recommenders": ()}, "recommenders is empty"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        simulate(**{**TINY, **kwargs})


def _batch(n, **overrides):
    batch = {name: np.zeros(n, np.int64) for name in COLUMN_NAMES}
    batch.update(
        recommender="r",
        instruction=np.full(n, "", object),
        candidate_ids=np.zeros((n, 4)),
        slate_ids=np.zeros((n, 2)),
        propensity=np.ones((n, 2)),
        clicks=np.zeros((n, 2), bool),
    )
    batch.update(overrides)
    return batch


def test_writer_writes_one_part_per_flush_and_never_mixes_runs(tmp_path):
    with TrajectoryWriter(tmp_path) as writer:
        writer.append(_batch(3))
        assert writer.flush().name == "part-0000.parquet"
        assert writer.flush() is None  # nothing buffered
        writer.append(_batch(2, user_id=np.arange(2)))
    assert writer.rows_written == 5 and writer.parts == 2
    df = read_trajectories(tmp_path)
    assert df.user_id.tolist() == [0, 0, 0, 0, 1]
    with pytest.raises(ReplayDataError, match="already holds"):
        TrajectoryWriter(tmp_path)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({k: v for k, v in _batch(2).items() if k != "reward"}, r"missing \['reward'\]"),
        ({**_batch(2), "extra": np.zeros(2)}, r"unknown \['extra'\]"),
        (_batch(2, clicks=np.zeros(2, bool)), "'clicks' .* needs shape"),
        (_batch(2, day=np.zeros(3)), "'day' .* needs shape"),
    ],
)
def test_writer_rejects_malformed_batches(tmp_path, batch, message):
    with pytest.raises(ValueError, match=message):
        TrajectoryWriter(tmp_path).append(batch)


def test_reading_nothing_is_an_error(tmp_path):
    with pytest.raises(ReplayDataError, match="no part-"):
        read_trajectories(tmp_path)
