"""evaluate(): common random numbers, per-episode metrics, table/CSV/PNG, CLI, bad input."""

from __future__ import annotations

import argparse
import csv
import importlib
from typing import Any

import numpy as np
import pytest

from recoworld.agents import PopularityRecommender, RandomRecommender, batch_single
from recoworld.cli import evaluate as evaluate_cli
from recoworld.envs import RecoEnv
from recoworld.errors import ConfigError
from recoworld.evaluation import METRICS, EvaluationResult, evaluate, load_saved_policy
from recoworld.types import Recommendation

ENV = "recoworld/Engagement-v0"
TINY = {"n_items": 200, "num_candidates": 20}


class Spy:
    """Wraps a recommender and records what the runner calls."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.first_candidates: list[np.ndarray] = []
        self.fresh = True
        self.updates = 0
        self.reset_masks: list[Any] = []

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        if self.fresh:
            self.first_candidates.append(np.asarray(info["candidate_ids"]).copy())
            self.fresh = False
        return self.base.recommend(obs, info)

    def update(self, obs: Any, info: Any, action: Any, feedback: dict[str, Any]) -> None:
        assert "reward" in feedback and "clicks" in feedback
        self.updates += 1

    def reset(self, mask: Any = None) -> None:
        self.reset_masks.append(None if mask is None else np.asarray(mask).copy())
        if mask is None:
            self.fresh = True
        self.base.reset(mask)


@pytest.fixture(scope="module")
def result() -> EvaluationResult:
    return evaluate(["random", "popularity"], ENV, n_users=6, seeds=(0, 1), **TINY)


def test_every_recommender_meets_the_same_users() -> None:
    env_like = RecoEnv(**{"users": "engagement", **TINY})
    space, catalog = env_like.action_space, env_like.catalog
    spies = {
        "a": Spy(RandomRecommender(space, seed=1)),
        "b": Spy(PopularityRecommender(space, catalog)),
    }
    out = evaluate(spies, ENV, n_users=5, seeds=(0, 3), **TINY)
    a, b = spies["a"], spies["b"]
    assert len(a.first_candidates) == 2  # one fresh start per seed
    for ca, cb in zip(a.first_candidates, b.first_candidates, strict=True):
        np.testing.assert_array_equal(ca, cb)
    assert not np.array_equal(a.first_candidates[0], a.first_candidates[1])  # seeds differ
    np.testing.assert_array_equal(out.episode_keys["a"], out.episode_keys["b"])
    assert a.updates > 0 and any(m is not None and m.any() for m in a.reset_masks)


def test_episodes_match_single_env_rollouts() -> None:
    out = evaluate(["popularity"], ENV, n_users=3, seeds=(0,), **TINY)
    values = out.values["popularity"]
    for slot in range(3):
        env = RecoEnv(**{"users": "engagement", "multi_session": False, **TINY})
        rec = PopularityRecommender(env.action_space, env.catalog)
        obs, info = env.reset(seed=slot)
        ret, steps, clicks, done = 0.0, 0, 0, False
        while not done:
            action = rec.recommend(*batch_single(obs, info)).action[0]
            obs, reward, term, trunc, info = env.step(action)
            ret, steps, clicks = ret + reward, steps + 1, clicks + int(np.sum(info["clicks"]))
            done = term or trunc
        assert values["return"][slot] == pytest.approx(ret)
        assert values["session_length"][slot] == steps  # one session per episode
        assert values["clicks_per_step"][slot] == pytest.approx(clicks / steps)


def test_later_episodes_are_fresh_users_for_a_fresh_recommender() -> None:
    out = evaluate(["popularity"], ENV, n_users=2, seeds=(0,), episodes_per_user=2, **TINY)
    returns = out.values["popularity"]["return"]  # sorted by (slot, episode)
    env = RecoEnv(**{"users": "engagement", "multi_session": False, **TINY})
    rec = PopularityRecommender(env.action_space, env.catalog)
    obs, info = env.reset(seed=0)
    for episode in range(2):
        ret, done = 0.0, False
        while not done:
            obs, reward, term, trunc, info = env.step(
                rec.recommend(*batch_single(obs, info)).action[0]
            )
            ret, done = ret + reward, term or trunc
        assert returns[episode] == pytest.approx(ret)
        rec.reset()
        obs, info = env.reset()  # the slot's next user


def test_summary_holds_every_metric_with_a_confidence_interval(result: EvaluationResult) -> None:
    assert result.recommenders == ["random", "popularity"]
    for name in result.recommenders:
        assert set(result.summary[name]) == set(METRICS)
        assert result.episodes(name) == 12
        for metric, (mean, half) in result.summary[name].items():
            if metric in ("follows", "gifts"):  # user-author envs only
                assert np.isnan(mean) and metric not in result.metrics
                continue
            assert np.isfinite(mean), metric
            assert half >= 0 or metric == "coverage", metric
        cps = result.summary[name]["clicks_per_step"][0]
        assert 0 < cps <= 1
        assert 0 < result.summary[name]["coverage"][0] <= 1
        assert result.values[name]["coverage"].shape == (2,)  # one per seed
    assert result.settings["seeds"] == [0, 1] and result.settings["unfinished"]["random"] == 0


def test_difference_pairs_the_same_users(result: EvaluationResult) -> None:
    assert result.difference("random", "random", "return") == (0.0, 0.0)
    mean, _ = result.difference("popularity", "random", "return")
    pop, rnd = result.values["popularity"]["return"], result.values["random"]["return"]
    assert mean == pytest.approx(float(np.mean(pop - rnd)))
    with pytest.raises(ConfigError, match="not per episode"):
        result.difference("random", "popularity", "coverage")
    with pytest.raises(ConfigError, match="unknown recommender 'nope'"):
        result.difference("nope", "random", "return")


def test_table_and_csv(result: EvaluationResult, tmp_path: Any) -> None:
    text = result.table()
    lines = text.splitlines()
    assert "random" in lines[0] and "popularity" in lines[0]
    assert result.metrics == [m for m in METRICS if m not in ("follows", "gifts")]
    assert len(lines) == 2 + len(result.metrics)
    assert all(any(line.startswith(m) for line in lines) for m in result.metrics)
    assert "±" in text
    md = result.table(markdown=True)
    assert md.startswith("| metric | random | popularity |")
    rows = list(csv.DictReader(open(result.to_csv(tmp_path / "r" / "eval.csv"))))
    assert len(rows) == 2 * len(result.metrics)
    first = rows[0]
    assert set(first) == {"recommender", "metric", "mean", "ci95_half_width", "n"}
    assert first["recommender"] == "random" and first["metric"] == "return"
    assert float(first["mean"]) == pytest.approx(result.summary["random"]["return"][0])
    assert first["n"] == "12"


def test_plot_writes_a_png(result: EvaluationResult, tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    path = result.plot(tmp_path / "eval.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_episodes_per_user_and_step_cap() -> None:
    out = evaluate(["random"], ENV, n_users=4, seeds=(0,), episodes_per_user=2, **TINY)
    assert out.episodes("random") == 8
    assert np.unique(out.episode_keys["random"]).size == 8
    capped = evaluate(["random"], ENV, n_users=4, seeds=(0,), max_steps=3, **TINY)
    assert capped.episodes("random") + capped.settings["unfinished"]["random"] == 4
    assert capped.settings["unfinished"]["random"] > 0


def test_multi_session_metrics_on_retention() -> None:
    out = evaluate(
        ["popularity", "instruction_popularity"],
        "recoworld:recoworld/Retention-v0",
        n_users=4,
        seeds=(0,),
        horizon_days=3,
        **TINY,
    )
    for name in out.recommenders:
        nd = out.values[name]["next_day_return"]
        assert np.all((nd[~np.isnan(nd)] >= 0) & (nd[~np.isnan(nd)] <= 1))
        length = out.values[name]["session_length"]
        assert np.all(length >= 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_users": 0}, "n_users=0 must be a positive integer"),
        ({"seeds": []}, "seeds=[] must be a non-empty list"),
        ({"seeds": [-1]}, "seeds=[-1]"),
        ({"seeds": [1, 1]}, "repeat a seed"),
        ({"episodes_per_user": 0}, "episodes_per_user=0"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"env_id": "recoworld/Nope-v0"}, "unknown env id 'recoworld/Nope-v0'; choose one of"),
        ({"recommenders": ["grumpy"]}, "unknown recommender 'grumpy'; choose one of"),
        ({"recommenders": ["random", "random"]}, "is given twice"),
        ({"recommenders": []}, "recommenders is empty"),
        ({"recommenders": [42]}, "neither a registered name"),
        ({"recommenders": ["runs/missing.zip"]}, "does not exist"),
    ],
)
def test_bad_input(kwargs: dict[str, Any], message: str) -> None:
    args = {"recommenders": ["random"], "env_id": ENV, "n_users": 2, "seeds": (0,), **kwargs}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        evaluate(**args, **TINY)


def test_a_missing_saved_policy(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_saved_policy(tmp_path / "nope.zip", None)


def test_a_saved_policy_is_evaluated_beside_named_recommenders(tmp_path: Any) -> None:
    pytest.importorskip("stable_baselines3")
    from recoworld.agents.sb3.train import train

    small = {**TINY, "slate_size": 2}
    ppo = {"n_steps": 32, "batch_size": 32}
    never = 10**6  # no evaluation or checkpoint during this tiny run
    run = train(
        "ppo",
        ENV,
        64,
        n_envs=2,
        out_dir=tmp_path,
        eval_freq=never,
        eval_episodes=1,
        checkpoint_freq=never,
        algo_kwargs=ppo,
        plot=False,
        **small,
    )
    out = evaluate(["random", run.model_path], ENV, n_users=3, seeds=(0,), **small)
    assert out.recommenders == ["random", "policy:model"]
    assert out.episodes("policy:model") == 3
    np.testing.assert_array_equal(out.episode_keys["random"], out.episode_keys["policy:model"])


def cli_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_prints_the_table_and_writes_csv_and_png(tmp_path: Any, capsys: Any) -> None:
    out = tmp_path / "run"
    argv = ["--env", ENV, "--recommenders", "random", "instruction_popularity"]
    argv += ["--users", "4", "--seeds", "0", "1", "--out", str(out)]
    assert evaluate_cli.run(cli_args(argv)) == 0
    captured = capsys.readouterr()
    assert "instruction_popularity" in captured.out and "session_length" in captured.out
    assert str(out) in captured.out and "4/4" in captured.err
    assert (out / "evaluation.csv").is_file()
    pytest.importorskip("matplotlib")
    assert (out / "evaluation.png").is_file()


def test_cli_defaults() -> None:
    args = cli_args([])
    assert args.env == "recoworld/Retention-v0" and args.users == 256
    assert args.recommenders == ["random", "popularity", "instruction_popularity"]
    assert args.seeds == [0, 1, 2] and args.policy == [] and args.out is None


def test_cli_unknown_recommender_lists_the_valid_ones(
    tmp_path: Any, capsys: Any, monkeypatch: Any
) -> None:
    with pytest.raises(ConfigError, match="unknown recommender 'grumpy'; choose one of"):
        evaluate_cli.run(cli_args(["--recommenders", "grumpy", "--out", str(tmp_path)]))
    cli_main = importlib.import_module("recoworld.cli.main")  # the package exports main()
    monkeypatch.setitem(cli_main.SUBCOMMANDS, "evaluate", "recoworld.cli.evaluate")
    assert cli_main.main(["evaluate", "--recommenders", "grumpy", "--users", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown recommender 'grumpy'; choose one of")
    assert "popularity" in err and "instruction_popularity" in err


def test_user_author_env_reports_follows_and_gifts_and_others_do_not() -> None:
    from recoworld.evaluation import evaluate

    pairs = evaluate(["random"], "recoworld/UserAuthor-v0", n_users=16, seeds=(0,), n_requests=40)
    follows, _ = pairs.summary["random"]["follows"]
    assert 0.2 < follows < 5.0  # ~1% of 40 requests per user, more with clicks
    assert pairs.summary["random"]["gifts"][0] >= 0.0
    assert "follows" in pairs.table() and "gifts" in pairs.table()
    plain = evaluate(["random"], "recoworld/Retention-v0", n_users=4, seeds=(0,), horizon_days=2)
    assert np.isnan(plain.summary["random"]["follows"][0])
    assert "follows" not in plain.table()
