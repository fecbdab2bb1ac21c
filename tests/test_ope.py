"""Off-policy estimators: unbiasedness on synthetic bandits with known truth, the slate
estimators at slate size 1, the pseudo-inverse closed form, validation against the simulator's
ground truth, evaluation of a log, and tables of bad inputs."""

import argparse
import itertools

import numpy as np
import pytest

from recoworld.errors import ConfigError, ReplayDataError
from recoworld.replay.ope import (
    IPS,
    SNIPS,
    ClippedIPS,
    DoublyRobust,
    IndependentIPS,
    ItemMeanReward,
    PseudoInverse,
    RewardInteractionIPS,
    SlateIPS,
    plackett_luce_conditionals,
    plackett_luce_marginals,
    plackett_luce_sample,
    pseudo_inverse_weights,
)
from recoworld.replay.validation import (
    SoftmaxPolicy,
    UniformPolicy,
    evaluate_log,
    slate_indices,
    validate_ope,
)

K = 8


def bandit(n, seed, target_temp=0.5):
    """A contextual bandit with known truth: uniform logging over K arms, a softmax target,
    Bernoulli rewards with per-context means."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.05, 0.6, (n, K))  # expected reward of each arm in each context
    logits = rng.normal(0, 1, (n, K)) / target_temp
    pi = np.exp(logits - logits.max(1, keepdims=True))
    pi /= pi.sum(1, keepdims=True)
    a = rng.integers(0, K, n)
    r = (rng.random(n) < mu[np.arange(n), a]).astype(float)
    truth = float((pi * mu).sum(1).mean())
    return {
        "r": r,
        "p0": np.full(n, 1.0 / K),
        "pe": pi[np.arange(n), a],
        "pi": pi,
        "a": a,
        "ids": np.tile(np.arange(K), (n, 1)),
        "truth": truth,
        "mu": mu,
    }


def dr_kwargs(d):
    return {"target_probabilities": d["pi"], "action": d["a"], "candidate_ids": d["ids"]}


@pytest.fixture(scope="module")
def repetitions():
    return [bandit(1500, seed) for seed in range(60)]


@pytest.mark.parametrize(
    ("estimator", "extra"),
    [(IPS(), False), (SNIPS(), False), (DoublyRobust(), True)],
    ids=["IPS", "SNIPS", "DR"],
)
def test_unbiased_within_its_standard_error(repetitions, estimator, extra):
    errors = []
    for d in repetitions:
        kw = dr_kwargs(d) if extra else {}
        errors.append(estimator.estimate(d["r"], d["p0"], d["pe"], **kw) - d["truth"])
    errors = np.array(errors)
    se = errors.std(ddof=1) / np.sqrt(errors.size)
    assert abs(errors.mean()) < 3 * se + 1e-3


def test_bootstrap_intervals_cover_the_truth(repetitions):
    covered = []
    for d in repetitions[:30]:
        _, lo, hi = IPS().estimate_ci(d["r"], d["p0"], d["pe"], n_bootstrap=200, seed=1)
        covered.append(lo <= d["truth"] <= hi)
    assert np.mean(covered) >= 0.8  # nominal 0.95; 30 draws


def test_clipping_reduces_variance_and_biases_down(repetitions):
    ips = [IPS().estimate(d["r"], d["p0"], d["pe"]) - d["truth"] for d in repetitions]
    clip = [
        ClippedIPS(max_weight=2.0).estimate(d["r"], d["p0"], d["pe"]) - d["truth"]
        for d in repetitions
    ]
    assert np.var(clip) < 0.7 * np.var(ips)
    assert np.mean(clip) < np.mean(ips)  # rewards are non-negative: clipping only removes mass
    d = repetitions[0]
    big = ClippedIPS(max_weight=1e9).estimate(d["r"], d["p0"], d["pe"])
    assert big == pytest.approx(IPS().estimate(d["r"], d["p0"], d["pe"]))


def test_snips_self_normalises():
    d = bandit(500, 3)
    const = np.full(500, 0.7)
    assert SNIPS().estimate(const, d["p0"], d["pe"]) == pytest.approx(0.7)
    assert IPS().estimate(const, d["p0"], d["pe"]) != pytest.approx(0.7)
    # invariant to rescaling the weights; IPS is not
    half = d["pe"] / 2
    assert SNIPS().estimate(d["r"], d["p0"], half) == pytest.approx(
        SNIPS().estimate(d["r"], d["p0"], d["pe"])
    )
    assert IPS().estimate(d["r"], d["p0"], half) == pytest.approx(
        IPS().estimate(d["r"], d["p0"], d["pe"]) / 2
    )


def test_dr_with_exact_reward_model_has_lower_variance(repetitions):
    ips, dr = [], []  # errors against each repetition's truth
    for d in repetitions[:30]:
        ips.append(IPS().estimate(d["r"], d["p0"], d["pe"]) - d["truth"])
        dr.append(
            DoublyRobust().estimate(
                d["r"],
                d["p0"],
                d["pe"],
                target_probabilities=d["pi"],
                action=d["a"],
                reward_predictions=d["mu"],
            )
            - d["truth"]
        )
    assert np.mean(np.square(dr)) < 0.7 * np.mean(np.square(ips))


def test_item_mean_reward_shrinks_toward_the_mean():
    predict = ItemMeanReward(prior_strength=1.0).fit(np.array([0, 0, 1]), np.array([1.0, 1.0, 0.0]))
    mean = 2 / 3
    assert predict(np.array([0]))[0] == pytest.approx((2 + mean) / 3)
    assert predict(np.array([1]))[0] == pytest.approx((0 + mean) / 2)
    assert predict(np.array([7]))[0] == pytest.approx(mean)  # unseen item


@pytest.mark.parametrize(
    "estimator",
    [IndependentIPS(), RewardInteractionIPS(), SlateIPS(), PseudoInverse()],
    ids=lambda e: type(e).__name__,
)
def test_slate_estimators_equal_ips_at_slate_size_one(estimator):
    d = bandit(400, 5)
    want = IPS().estimate(d["r"], d["p0"], d["pe"])
    kw = {"target_item_mass": d["pe"][:, None]} if isinstance(estimator, PseudoInverse) else {}
    assert estimator.estimate(d["r"][:, None], d["p0"][:, None], d["pe"][:, None], **kw) == (
        pytest.approx(want)
    )
    assert estimator.estimate(d["r"], d["p0"], d["pe"], **kw) == pytest.approx(want)
    want_ci = IPS().estimate_ci(d["r"], d["p0"], d["pe"], n_bootstrap=50, seed=3)
    got_ci = estimator.estimate_ci(d["r"], d["p0"], d["pe"], n_bootstrap=50, seed=3, **kw)
    assert got_ci == pytest.approx(want_ci)


def slate_world(m=5, n_slots=3, seed=0):
    """Every ordered slate of L distinct of m candidates, a Plackett-Luce target and its exact
    slate probabilities."""
    rng = np.random.default_rng(seed)
    slates = np.array(list(itertools.permutations(range(m), n_slots)))
    p = rng.dirichlet(np.ones(m))
    probs = np.tile(p, (len(slates), 1))
    cond = plackett_luce_conditionals(probs, slates)
    return slates, probs, cond, np.prod(cond, 1), rng


def test_pseudo_inverse_closed_form_matches_the_pseudo_inverse():
    m, n_slots = 6, 3
    slates, _, _, prob_slate, _ = slate_world(m, n_slots)
    onehot = np.zeros((len(slates), n_slots * m))
    for j in range(n_slots):
        onehot[np.arange(len(slates)), j * m + slates[:, j]] = 1
    gamma = onehot.T @ onehot / len(slates)  # uniform logger
    q = (prob_slate[:, None] * onehot).sum(0)
    want = onehot @ np.linalg.pinv(gamma) @ q
    qm = q.reshape(n_slots, m)
    got = pseudo_inverse_weights(
        qm[np.arange(n_slots), slates], qm.sum(0)[slates], np.full(len(slates), m)
    )
    np.testing.assert_allclose(got, want, atol=1e-10)


def test_slate_estimators_are_exactly_unbiased_where_their_assumptions_hold():
    """Exact expectations over every slate of a uniform logger (no sampling)."""
    m, n_slots = 5, 3
    slates, probs, cond, prob_slate, rng = slate_world(m, n_slots)
    n = len(slates)
    p0_cond = np.tile(1.0 / (m - np.arange(n_slots)), (n, 1))
    p0_marg = np.full((n, n_slots), 1.0 / m)
    q, mass = plackett_luce_marginals(probs, slates)
    phi = rng.uniform(0, 1, (n_slots, m))  # additive, per (slot, item)
    additive = phi[np.arange(n_slots), slates]
    truth_add = (prob_slate * additive.sum(1)).sum()

    def expect(est, rewards, p0, pe, **kw):
        return est.estimate(rewards, p0, pe, **kw)  # the mean over all slates = expectation

    assert expect(IndependentIPS(), additive, p0_marg, q) == pytest.approx(truth_add)
    assert expect(PseudoInverse(), additive, p0_marg, q, target_item_mass=mass) == (
        pytest.approx(truth_add)
    )
    # a cascade-like reward: slot k depends on the items at slots <= k
    prefix = np.cumsum(phi[np.arange(n_slots), slates], 1) / np.arange(1, n_slots + 1)
    cascade = prefix * (slates % 2 == 0)
    truth_cascade = (prob_slate * cascade.sum(1)).sum()
    assert expect(RewardInteractionIPS(), cascade, p0_cond, cond) == pytest.approx(truth_cascade)
    # any reward at all: whole-slate IPS
    arbitrary = rng.uniform(0, 1, (n, n_slots))
    truth_any = (prob_slate * arbitrary.sum(1)).sum()
    assert expect(SlateIPS(), arbitrary, p0_cond, cond) == pytest.approx(truth_any)


@pytest.mark.parametrize("n_slots", [2, 3, 4])
def test_plackett_luce_marginals_match_enumeration(n_slots):
    m = 6
    rng = np.random.default_rng(n_slots)
    p = rng.dirichlet(np.ones(m), size=4)
    slates = plackett_luce_sample(p, n_slots, rng)
    q, mass = plackett_luce_marginals(p, slates, rng, n_samples=4000)
    for i in range(4):
        exact = np.zeros((n_slots, m))
        for perm in itertools.permutations(range(m), n_slots):
            cond = plackett_luce_conditionals(p[i : i + 1], np.array([perm]))
            exact[np.arange(n_slots), list(perm)] += np.prod(cond)
        tol = 0 if n_slots <= 3 else 0.01  # exact up to 3 slots, sampled beyond
        np.testing.assert_allclose(q[i], exact[np.arange(n_slots), slates[i]], atol=tol + 1e-12)
        np.testing.assert_allclose(mass[i], exact.sum(0)[slates[i]], atol=2 * tol + 1e-12)


def test_groups_bootstrap_resamples_whole_groups():
    d = bandit(600, 9)
    groups = np.repeat(np.arange(60), 10)
    value, lo, hi = IPS().estimate_ci(d["r"], d["p0"], d["pe"], groups=groups, n_bootstrap=300)
    assert lo <= value <= hi
    assert value == pytest.approx(IPS().estimate(d["r"], d["p0"], d["pe"]))


# ------------------------------------------------------------------ bad inputs
R, P0, PE = np.ones(4), np.full(4, 0.25), np.full(4, 0.5)
BAD_INPUTS = [
    (IPS(), (np.ones(3), P0, PE), {}, ReplayDataError, "logging_propensity has shape"),
    (
        IPS(),
        (R, np.array([0.25, 0.0, 0.25, 0.25]), PE),
        {},
        ReplayDataError,
        r"logging_propensity holds 0\.0 at row 1.*\(0, 1\]",
    ),
    (
        IPS(),
        (R, np.array([0.25, 1.5, 0.25, 0.25]), PE),
        {},
        ReplayDataError,
        "logging_propensity holds 1.5 at row 1",
    ),
    (
        IPS(),
        (R, P0, np.array([0.5, -0.1, 0.5, 0.5])),
        {},
        ReplayDataError,
        "target_propensity holds -0.1 at row 1",
    ),
    (IPS(), (np.array([1.0, np.nan, 0, 0]), P0, PE), {}, ReplayDataError, "rewards hold a NaN"),
    (
        IPS(),
        (np.ones((4, 2)), np.full((4, 2), 0.5), np.full((4, 2), 0.5)),
        {},
        ReplayDataError,
        r"rewards have shape \(4, 2\)",
    ),
    (IPS(), (R, P0, PE), {"action": np.zeros(4, int)}, ConfigError, "unexpected arrays"),
    (DoublyRobust(), (R, P0, PE), {}, ReplayDataError, "needs target_probabilities"),
    (
        DoublyRobust(),
        (R, P0, PE),
        {"target_probabilities": np.full((4, 2), 0.5), "action": np.array([0, 1, 2, 0])},
        ReplayDataError,
        "action must be",
    ),
    (
        PseudoInverse(),
        (np.ones((4, 2)), np.full((4, 2), 0.25), np.full((4, 2), 0.25)),
        {},
        ReplayDataError,
        "needs target_item_mass",
    ),
    (
        PseudoInverse(),
        (np.ones((4, 2)), np.tile([0.25, 1 / 3], (4, 1)), np.full((4, 2), 0.2)),
        {"target_item_mass": np.full((4, 2), 0.4)},
        ReplayDataError,
        "uniformly random logger",
    ),
    (
        RewardInteractionIPS(),
        (np.ones((4, 2)), np.full((4, 3), 0.5), np.full((4, 2), 0.5)),
        {},
        ReplayDataError,
        r"logging_propensity has shape \(4, 3\)",
    ),
]


@pytest.mark.parametrize(("est", "args", "kw", "error", "match"), BAD_INPUTS)
def test_bad_inputs_name_the_array_and_the_fix(est, args, kw, error, match):
    with pytest.raises(error, match=match):
        est.estimate(*args, **kw)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ClippedIPS(max_weight=0), "max_weight must be a positive finite number"),
        (lambda: ClippedIPS(max_weight=float("inf")), "max_weight"),
        (lambda: ItemMeanReward(prior_strength=-1), "prior_strength"),
        (lambda: DoublyRobust(reward_model=object()), "has no fit"),
        (lambda: IPS().estimate_ci(R, P0, PE, n_bootstrap=5), "n_bootstrap=5 is too few"),
        (lambda: IPS().estimate_ci(R, P0, PE, alpha=1.5), "alpha=1.5 must lie in"),
        (lambda: IPS().estimate_ci(R, P0, PE, groups=np.arange(3)), "groups have shape"),
    ],
)
def test_bad_settings(make, match):
    with pytest.raises((ConfigError, ReplayDataError), match=match):
        make()


# ------------------------------------------------------- against the simulator
def test_validation_intervals_cover_the_on_policy_truth():
    report = validate_ope(
        lambda catalog: SoftmaxPolicy(catalog, "popularity", temperature=0.5),
        n_users=3000,
        n_items=400,
        n_topics=10,
        dim=16,
        n_bootstrap=300,
        seed=0,
    )
    covered = report.covered()
    for name in ("IPS", "SNIPS", "DR"):
        assert covered[name], report.table()
    # the target is measurably different from the logging policy
    assert abs(report.on_policy - report.logging_value) > 2 * report.on_policy_se
    assert "covered" in report.table()


def test_validation_of_slate_estimators():
    report = validate_ope(
        lambda catalog: SoftmaxPolicy(catalog, "quality", temperature=0.1, slate_size=3),
        slate_size=3,
        num_candidates=6,
        n_users=3000,
        n_items=400,
        n_topics=10,
        dim=16,
        n_bootstrap=300,
        seed=1,
    )
    assert report.covered()["SlateIPS"], report.table()  # unbiased for any user


def test_evaluate_log_of_a_uniform_logger(tmp_path):
    pytest.importorskip("pyarrow")
    from recoworld.simulation import simulate

    kw = dict(n_items=200, n_topics=8, dim=8, num_candidates=10, slate_size=2)
    simulate("engagement", ("random",), n_users=60, days=2, seed=0, out_dir=tmp_path, **kw)
    from recoworld.envs.config import EnvConfig

    catalog = EnvConfig(n_items=200, n_topics=8, dim=8).make_catalog()
    rows = evaluate_log(
        tmp_path / "trajectories",
        {"uniform": UniformPolicy(2), "pop": SoftmaxPolicy(catalog, "popularity", 1.0, 2)},
        n_bootstrap=100,
    )
    by = {(r.target, r.estimator): r for r in rows}
    logged = by[("logged", "on-policy")].estimate
    for name in ("IIPS", "RIPS", "SlateIPS", "PI"):
        # the uniform target is the logger itself: every weight is 1
        assert by[("uniform", name)].estimate == pytest.approx(logged)
        assert np.isfinite(by[("pop", name)].estimate)


def test_cli_evaluate_writes_a_table(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    from recoworld.cli import replay as cli
    from recoworld.simulation import simulate

    simulate(
        "engagement",
        ("random",),
        n_users=40,
        days=2,
        seed=0,
        out_dir=tmp_path,
        num_candidates=10,
        slate_size=1,
    )
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "ope.csv"
    argv = [
        "evaluate",
        "--log",
        str(tmp_path / "trajectories"),
        "--recommenders",
        "uniform",
        "softmax_popularity",
        "--bootstrap",
        "50",
        "--out",
        str(out),
    ]
    assert cli.run(parser.parse_args(argv)) == 0
    text = capsys.readouterr().out
    assert "softmax_popularity" in text and "SNIPS" in text
    assert out.read_text().startswith("target,estimator,estimate,low,high,note")
    with pytest.raises(ConfigError, match="has no probabilities"):
        cli.run(
            parser.parse_args(
                [
                    "evaluate",
                    "--log",
                    str(tmp_path / "trajectories"),
                    "--recommenders",
                    "popularity",
                ]
            )
        )


def test_slate_indices_refuse_an_unknown_item():
    with pytest.raises(ReplayDataError, match="column 'slate_ids', slot 1"):
        slate_indices(np.array([[5, 6, 7]]), np.array([[6, 9]]))


def test_evaluate_log_refuses_mixed_and_deterministic_loggers(tmp_path):
    pytest.importorskip("pyarrow")
    from recoworld.simulation import simulate

    simulate(
        "engagement",
        ("random", "popularity"),
        n_users=20,
        days=1,
        seed=0,
        out_dir=tmp_path,
        n_items=100,
        n_topics=5,
        dim=8,
        num_candidates=10,
        slate_size=2,
    )
    log = tmp_path / "trajectories"
    targets = {"uniform": UniformPolicy(2)}
    with pytest.raises(ReplayDataError, match="mixes the logging recommenders"):
        evaluate_log(log, targets)
    with pytest.raises(ReplayDataError, match="'popularity' is deterministic"):
        evaluate_log(log, targets, recommender="popularity")
    rows = evaluate_log(log, targets, recommender="random", n_bootstrap=20)
    assert rows[0].target == "logged"
