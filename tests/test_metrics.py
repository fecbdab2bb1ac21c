"""Tests for recoworld.metrics: hand-computed numbers on tiny inputs and tables of bad inputs."""

import math

import numpy as np
import pytest

from recoworld import metrics as m

NAN = float("nan")


def test_ctr_is_the_mean_click():
    assert m.ctr(np.array([[1, 0], [0, 0]])) == 0.25
    assert m.ctr([True, False, True]) == pytest.approx(2 / 3)
    assert isinstance(m.ctr([True]), float)


def test_intra_list_diversity_hand_computed():
    emb = np.zeros((3, 3, 2))
    emb[0] = [[1, 0], [0, 1], [1, 0]]  # cosines 0, 1, 0 -> mean 1/3
    emb[1] = [[1, 0], [-1, 0], [NAN, NAN]]  # cosine -1; the NaN slot is masked
    emb[2] = [[1, 0], [0, 1], [1, 0]]  # one valid item
    mask = np.array([[True, True, True], [True, True, False], [True, False, False]])
    out = m.intra_list_diversity(emb, mask)
    np.testing.assert_allclose(out, [2 / 3, 2.0, 0.0])
    assert out.dtype == np.float64


def test_intra_list_diversity_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4, 5, 3))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    mask = rng.random((4, 5)) < 0.7
    expected = []
    for e, v in zip(emb, mask, strict=True):  # the slow definition, to check the identity
        cos = [e[i] @ e[j] for i in range(5) for j in range(5) if i != j and v[i] and v[j]]
        expected.append(1.0 - np.mean(cos) if cos else 0.0)
    np.testing.assert_allclose(m.intra_list_diversity(emb, mask), expected)


def test_topic_diversity_hand_computed():
    topics = np.array([[0, 0, 1], [2, 2, 2], [0, 1, -1], [3, -1, -1]])
    mask = topics >= 0
    np.testing.assert_allclose(m.topic_diversity(topics, 4, mask), [2 / 3, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(m.topic_diversity(topics[:2], 4), [2 / 3, 0.0])


def test_self_information_and_floor():
    prob = np.array([0.5, 0.25, 0.0, 1.0])  # floor = 1 / (10 * 4) = 1 / 40
    out = m.self_information([0, 1, 2, 3, -1], prob)
    np.testing.assert_allclose(out, [1.0, 2.0, math.log2(40), 0.0, NAN])
    assert m.self_information([[0, -1]], prob).shape == (1, 2)


def test_novelty_ignores_missing_items():
    prob = np.array([0.5, 0.25, 0.0, 1.0])
    assert m.novelty([[0, 1], [-1, 3]], prob) == pytest.approx(1.0)
    assert m.novelty([-1, -1], prob) == 0.0


def test_item_consumption_share_counts_distinct_users():
    users = [0, 0, 1, 2]
    clicks = [1, 1, 1, -1]  # user 0 clicks item 1 twice; user 2 never clicks but counts
    np.testing.assert_allclose(m.item_consumption_share(clicks, users, 3), [0, 2 / 3, 0])
    np.testing.assert_allclose(m.item_consumption_share(clicks, users, 3, n_users=4), [0, 0.5, 0])
    np.testing.assert_array_equal(m.item_consumption_share([], [], 2), [0.0, 0.0])


def test_serendipity_share_of_clicks_on_new_topics():
    before = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1]], dtype=bool)
    # click 0: topic 0 seen; click 1: topic 1 new; row 2: no click; click 3: topic 2 seen
    assert m.serendipity([5, 6, -1, 7], [0, 1, -1, 2], before) == pytest.approx(1 / 3)
    assert m.serendipity([-1], [-1], np.zeros((1, 3), dtype=bool)) == 0.0


def test_coverage_and_exposure_counts():
    shown = np.array([[0, 1, -1], [1, 3, -1]])
    assert m.coverage(shown, 5) == pytest.approx(3 / 5)
    np.testing.assert_array_equal(m.exposure_counts(shown, 5), [1, 2, 0, 1, 0])
    weighted = m.exposure_counts(shown, 5, position_weights=[1.0, 0.5, 0.25])
    np.testing.assert_allclose(weighted, [1.0, 1.5, 0.0, 0.5, 0.0])
    assert weighted.dtype == np.float64


@pytest.mark.parametrize(
    ("values", "expected"),
    [([1, 1, 1, 1], 0.0), ([0, 0, 0, 1], 0.75), ([0, 0, 0], 0.0), ([3, 1, 2], 2 / 9), ([7], 0.0)],
)
def test_gini(values, expected):
    assert m.gini(values) == pytest.approx(expected)


def test_retention_curve_counts_distinct_users_per_day():
    users = [0, 0, 1, 2, 0]
    days = [0, 0, 0, 1, 2]
    np.testing.assert_allclose(m.retention_curve(users, days, 4, 4), [0.5, 0.25, 0.25, 0.0])


def test_mean_ci():
    mean, half = m.mean_ci([1.0, 2.0, 3.0, NAN])
    assert mean == 2.0
    assert half == pytest.approx(1.959964 / math.sqrt(3), rel=1e-6)
    # std(ddof=1) = sqrt(2) and n = 2, so the half-width is z(0.75) itself.
    assert m.mean_ci([1.0, 3.0], confidence=0.5)[1] == pytest.approx(0.6744898, rel=1e-6)
    mean, half = m.mean_ci([5.0])
    assert mean == 5.0 and math.isnan(half)
    assert all(math.isnan(v) for v in m.mean_ci([]))


UNIT = np.array([[[1.0, 0.0], [0.0, 1.0]]])
PROB = np.array([0.5, 0.5])

BAD_INPUTS = [
    (lambda: m.ctr([]), "clicks is empty"),
    (lambda: m.ctr([0.5, 1.0]), "clicks must be bool or 0/1 int, got float64"),
    (lambda: m.ctr([0, 2]), r"clicks must lie in \[0, 2\), got 2"),
    (lambda: m.intra_list_diversity(UNIT[0]), r"shape \(n, L, d\), got \(2, 2\)"),
    (lambda: m.intra_list_diversity(UNIT * 2), "must be unit vectors, got norm 2"),
    (lambda: m.intra_list_diversity(UNIT, np.ones((1, 3), bool)), r"mask must be .* \(1, 2\)"),
    (lambda: m.intra_list_diversity(UNIT, np.ones((1, 2))), "got dtype float64"),
    (lambda: m.topic_diversity([[0, 5]], 3), r"slate_topics must lie in \[0, 3\), got 5"),
    (lambda: m.topic_diversity([[0, -1]], 3), "pass a mask marking padded slots"),
    (lambda: m.topic_diversity([0, 1], 3), r"shape \(n, L\), got \(2,\)"),
    (lambda: m.topic_diversity([[0, 1]], 0), "n_topics must be a positive int, got 0"),
    (lambda: m.topic_diversity([[0.0, 1.0]], 3), "slate_topics must hold integers"),
    (lambda: m.self_information([2], PROB), r"item_ids must lie in \[-1, 2\), got 2"),
    (lambda: m.self_information([-2], PROB), "got -2"),
    (lambda: m.self_information([0], [0.5, 1.5]), r"item_probability must be in \[0, 1\], got 1.5"),
    (lambda: m.self_information([0], [[0.5]]), r"must be \(n_items,\), got \(1, 1\)"),
    (lambda: m.novelty([0], [NAN]), "got nan"),
    (lambda: m.item_consumption_share([0, 1], [0], 2), r"same shape, got \(2,\) and \(1,\)"),
    (lambda: m.item_consumption_share([0], [-1], 2), "user_ids must lie in"),
    (lambda: m.item_consumption_share([0], [3], 2, n_users=3), r"\[0, 3\), got 3"),
    (lambda: m.serendipity([0], [0], np.zeros((1, 2))), "bool consumed_topics_before"),
    (lambda: m.serendipity([0, 1], [0, 0], np.zeros((1, 2), bool)), r"got \(2,\) and bool"),
    (lambda: m.serendipity([0], [2], np.zeros((1, 2), bool)), "clicked_topics must lie in"),
    (lambda: m.serendipity([0], [0, 1], np.zeros((1, 2), bool)), "same shape"),
    (lambda: m.coverage([0, 5], 5), r"shown_ids must lie in \[-1, 5\), got 5"),
    (lambda: m.coverage([0], -3), "n_items must be a positive int, got -3"),
    (lambda: m.exposure_counts([[0, 1]], 2, [1.0]), r"position_weights .* got shape \(1,\)"),
    (lambda: m.exposure_counts([[0, 1]], 2, [1.0, -1.0]), "position_weights must be finite, >= 0"),
    (lambda: m.gini([1.0, -2.0]), "non-negative, got -2.0 at index 1; .*np.clip"),
    (lambda: m.gini([]), "non-empty 1-D"),
    (lambda: m.gini([[1.0]]), r"got shape \(1, 1\)"),
    (lambda: m.retention_curve([0], [3], 2, 3), r"days must lie in \[0, 3\), got 3"),
    (lambda: m.retention_curve([2], [0], 2, 3), r"user_ids must lie in \[0, 2\), got 2"),
    (lambda: m.retention_curve([[0, 1]], [0, 1], 2, 3), "same shape"),
    (lambda: m.retention_curve([0], [0], 2, True), "n_days must be a positive int, got True"),
    (lambda: m.mean_ci([1.0], confidence=1.0), r"confidence must be in \(0, 1\), got 1.0"),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUTS)
def test_bad_inputs_raise_value_error_naming_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()
