"""Counter-based streams: uniform, independent of the batch, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from recoworld import rng


def test_uniforms_do_not_depend_on_the_batch() -> None:
    keys = rng.user_keys(7, np.arange(1000))
    full = rng.uniforms(keys, 3, rng.STEP, 5)
    part = rng.uniforms(keys[[10, 500, 999]], 3, rng.STEP, 5)
    np.testing.assert_array_equal(full[[10, 500, 999]], part)
    pairs = rng.uniform_pairs(keys, np.arange(1000), rng.CANDIDATES, 7)
    np.testing.assert_array_equal(
        pairs[[4, 9]], rng.uniform_pairs(keys[[4, 9]], np.array([4, 9]), rng.CANDIDATES, 7)
    )


def test_streams_differ_by_seed_user_counter_and_purpose() -> None:
    k = rng.user_keys(1, np.arange(3))
    base = rng.uniforms(k, 0, rng.STEP, 4)
    assert not np.array_equal(base, rng.uniforms(rng.user_keys(2, np.arange(3)), 0, rng.STEP, 4))
    assert not np.array_equal(base, rng.uniforms(k, 1, rng.STEP, 4))
    assert not np.array_equal(base, rng.uniforms(k, 0, rng.SESSION, 4))
    assert len(np.unique(base)) == base.size


def test_uniform_moments() -> None:
    u = rng.uniforms(rng.user_keys(0, np.arange(200_000)), 5, rng.STEP, 2)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.01


@pytest.mark.parametrize(("a", "b"), [(2.0, 5.0), (0.5, 0.5), (8.0, 2.0)])
def test_beta_matches_its_moments(a: float, b: float) -> None:
    n = 100_000
    u = rng.uniforms(rng.user_keys(3, np.arange(n)), 0, rng.SESSION, 50)
    x = rng.beta(np.full(n, a), np.full(n, b), u)
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert abs(x.mean() - mean) < 0.01
    assert abs(x.var() - var) < 0.1 * var


def test_geometric_gap_mean_and_floor() -> None:
    u = rng.uniforms(rng.user_keys(4, np.arange(100_000)), 0, rng.STEP, 1)[:, 0]
    g = rng.geometric_gap(np.full(u.size, 2.5), u)
    assert g.min() == 1
    assert abs(g.mean() - 2.5) < 0.03
    assert abs((g == 1).mean() - 1 / 2.5) < 0.01
