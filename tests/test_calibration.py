"""Calibration from logs: the round trip (simulate -> log -> calibrate -> simulate again), the
fidelity report, catalog files, the `replay calibrate` command, the numeric helpers and bad
inputs."""

import argparse
import json

import numpy as np
import pytest

from recoworld.catalog import Catalog
from recoworld.errors import ConfigError, ReplayDataError

pytest.importorskip("pyarrow")

from recoworld.replay.calibration import (
    LogArrays,
    calibrate,
    click_auc,
    fidelity_report,
    invert_popularity,
    ks_statistic,
    load_catalog,
    save_catalog,
    session_statistics,
)
from recoworld.simulation import simulate

# the original world: engagement users, a small catalog, the random recommender
WORLD = {"n_items": 300, "n_topics": 10, "dim": 16}
N_USERS, DAYS, SEED = 500, 5, 0


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    root = tmp_path_factory.mktemp("round_trip")
    simulate(
        "engagement",
        ("random",),
        n_users=N_USERS,
        days=DAYS,
        seed=SEED,
        out_dir=root / "original",
        **WORLD,
    )
    result = calibrate(root / "original" / "trajectories", seed=SEED)
    # the calibrated world, the same recommender, the same users' random streams
    simulate(
        recommenders=("random",),
        n_users=N_USERS,
        days=DAYS,
        seed=SEED,
        out_dir=root / "calibrated",
        **result.simulate_kwargs(),
    )
    original = session_statistics(root / "original" / "trajectories")
    calibrated = session_statistics(root / "calibrated" / "trajectories")
    return root, result, original, calibrated


@pytest.mark.parametrize("metric", ["ctr", "mean_session_length", "next_day_return"])
def test_round_trip_reproduces_the_original_within_10_percent(round_trip, metric):
    _, result, original, calibrated = round_trip
    want, got = original[metric], calibrated[metric]
    summary = {
        m: (round(original[m], 4), round(calibrated[m], 4))
        for m in ("ctr", "mean_session_length", "next_day_return")
    }
    assert abs(got - want) <= 0.10 * want, f"{metric}: {summary}; fitted {result.fitted}"


def test_calibration_recovers_the_generating_parameters(round_trip):
    """Loose checks: the fitted values of the engagement preset's own rules."""
    _, result, _, _ = round_trip
    f = result.fitted
    assert 0.7 < f["tau"] < 1.4  # true 1.0
    assert 3.5 < f["u0"] < 6.0  # true 4.8 (the quality convention shifts it)
    assert -4.8 < f["h0"] < -3.6  # true -4.2
    assert 1.5 < f["h_fatigue"] < 2.5  # true 2.0
    assert 1.5 < f["return_mean"] < 2.2  # true 1.8
    assert 0.6 < result.holdout_auc < 0.9
    assert result.catalog.n_items == WORLD["n_items"]
    assert result.env_kwargs == {"num_candidates": 50, "slate_size": 5}
    true = Catalog.synthetic(WORLD["n_items"], n_topics=10, dim=16, seed=0)
    assert np.corrcoef(result.catalog.quality, true.quality)[0, 1] > 0.5
    np.testing.assert_allclose(result.catalog.length, true.length, rtol=1e-3)  # exact from logs


def test_fidelity_report_table_and_png(round_trip):
    root, result, _, _ = round_trip
    report = fidelity_report(
        root / "original" / "trajectories",
        root / "calibrated" / "trajectories",
        calibration=result,
    )
    table = report.table()
    for name in ("CTR", "mean session length", "next-day return", "mean return gap", "AUC"):
        assert name in table
    for name in ("CTR", "mean session length", "mean return gap"):
        assert 0.0 <= report.rows[name][3] < 0.2  # KS statistics of similar distributions
    pytest.importorskip("matplotlib")
    png = report.plot(root / "fidelity.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_result_saves_population_and_catalog(round_trip, tmp_path):
    _, result, _, _ = round_trip
    paths = result.save(tmp_path)
    assert set(paths) == {"population.json", "catalog.npz", "calibration.json"}
    from recoworld.users.population import Population

    pop = Population.from_json((tmp_path / "population.json").read_text())
    assert pop.segments[0].params.tau == pytest.approx(result.fitted["tau"])
    catalog = load_catalog(tmp_path / "catalog.npz")
    np.testing.assert_array_equal(catalog.embeddings, result.catalog.embeddings)
    np.testing.assert_array_equal(catalog.topic, result.catalog.topic)
    assert list(catalog.title[:2]) == list(result.catalog.title[:2])
    info = json.loads((tmp_path / "calibration.json").read_text())
    assert info["fitted"]["u0"] == pytest.approx(result.fitted["u0"])


def test_catalog_file_round_trip_and_bad_files(tmp_path):
    catalog = Catalog.synthetic(50, n_topics=4, dim=6, n_creators=10, seed=3)
    path = save_catalog(catalog, tmp_path / "c.npz")
    back = load_catalog(path)
    for name in ("embeddings", "topic", "quality", "popularity", "length"):
        np.testing.assert_allclose(getattr(back, name), getattr(catalog, name))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ReplayDataError, match="cannot read the catalog file"):
        load_catalog(tmp_path / "bad.npz")
    np.savez(tmp_path / "partial.npz", embeddings=np.zeros((2, 2)))
    with pytest.raises(ReplayDataError, match="lacks the catalog arrays"):
        load_catalog(tmp_path / "partial.npz")


def small_log(path, users=60, days=3):
    simulate(
        "engagement",
        ("random",),
        n_users=users,
        days=days,
        seed=1,
        out_dir=path,
        n_items=80,
        n_topics=5,
        dim=8,
        num_candidates=20,
        slate_size=3,
    )
    return path / "trajectories"


def test_cli_calibrate_writes_outputs_and_a_failed_run_keeps_them(tmp_path, capsys):
    from recoworld.cli import replay as cli

    log = small_log(tmp_path / "log")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "cal"
    argv = ["calibrate", "--log", str(log), "--out", str(out), "--dim", "8", "--prior-draws", "16"]
    assert cli.run(parser.parse_args(argv)) == 0
    names = {p.name for p in out.iterdir()}
    assert {"population.json", "catalog.npz", "calibration.json", "fidelity.txt"} <= names
    assert not [n for n in names if n.startswith(".")]  # no scratch left behind
    assert (out / "simulated" / "trajectories").is_dir()
    assert "next-day return" in capsys.readouterr().out
    before = (out / "population.json").read_text()
    bad = ["calibrate", "--log", str(log), "--out", str(out), "--holdout", "0.95"]
    with pytest.raises(ConfigError, match=r"holdout=0\.95"):
        cli.run(parser.parse_args(bad))
    assert (out / "population.json").read_text() == before
    # a second successful run replaces the simulated log instead of refusing to mix runs
    assert cli.run(parser.parse_args([*argv, "--seed", "2"])) == 0


def test_calibrate_accepts_a_dataframe(tmp_path):
    from recoworld.replay.schema import read_trajectories

    frame = read_trajectories(small_log(tmp_path / "log"))
    result = calibrate(frame, dim=8, n_prior_draws=16, holdout=0.0)
    assert np.isnan(result.holdout_auc)
    assert result.n_rows == len(frame)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"holdout": 1.0}, ConfigError, r"holdout=1.0 must lie in \[0, 0.9\]"),
        ({"dim": 0}, ConfigError, "dim=0 must be a positive integer"),
        ({"n_topics": 0}, ConfigError, "n_topics=0"),
        ({"n_prior_draws": -1}, ConfigError, "n_prior_draws=-1"),
        ({"base": "engagement"}, ConfigError, "must be a ParametricUser"),
        ({"n_items": 10}, ReplayDataError, "n_items=10"),
        ({"recommender": "nobody"}, ReplayDataError, "no rows to calibrate"),
    ],
)
def test_bad_calibration_inputs(tmp_path_factory, kwargs, error, match):
    log = tmp_path_factory.getbasetemp() / "bad_inputs_log"
    if not log.exists():
        small_log(log, users=20, days=2)
    with pytest.raises(error, match=match):
        calibrate(log / "trajectories", **kwargs)


def test_single_session_logs_are_refused(tmp_path):
    from recoworld.replay.loaders import load_sessions

    s = load_sessions(small_log(tmp_path / "log", users=30, days=2))
    one = s.take(np.flatnonzero(s.session == 0))
    frame = one.to_frame()
    frame["return_days"] = -1
    frame["churned"] = False
    with pytest.raises(ReplayDataError, match="needs multi-session logs"):
        calibrate(frame, dim=8, n_prior_draws=8)


def test_click_auc_matches_pair_counting():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    labels = rng.random(200) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert click_auc(scores, labels) == pytest.approx(pairs)
    assert np.isnan(click_auc(scores, np.zeros(200, bool)))


def test_ks_statistic():
    assert ks_statistic(np.arange(10), np.arange(10)) == 0.0
    assert ks_statistic(np.zeros(5), np.ones(5)) == 1.0
    assert ks_statistic(np.array([1, 2, 3, 4]), np.array([3, 4, 5, 6])) == pytest.approx(0.5)


def test_invert_popularity_solves_the_candidate_equation():
    rng = np.random.default_rng(0)
    n_items, k = 120, 50
    topic = rng.integers(0, 6, n_items)
    p = np.exp(rng.normal(0, 1.2, n_items))
    p /= p.sum()
    draws = rng.dirichlet(np.ones(6))
    cold = 0.2
    root = np.sqrt(p)
    per_topic = np.bincount(topic, weights=root, minlength=6)
    s_int, s_pop, s_rand = 25 / 50, 15 / 50, 10 / 50
    freq = (
        (s_pop + s_int * cold) * p
        + s_int * (1 - cold) * draws[topic] * root / per_topic[topic]
        + s_rand / n_items
    )
    got = invert_popularity(freq * 1e6, topic, draws, cold, k, iters=500)
    np.testing.assert_allclose(got, p, rtol=0.02)


def test_log_arrays_sort_and_mark_sessions(tmp_path):
    arr = LogArrays.from_log(small_log(tmp_path / "log", users=20, days=2))
    key = arr.user * 10_000 + arr.session * 1000 + arr.step
    assert (np.diff(key) > 0).all()
    assert arr.first.sum() == arr.last.sum()
    assert (arr.step[arr.first] == 0).all()
    assert arr.n_candidates == 20
