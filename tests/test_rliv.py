"""RLIVAgent: shapes, ASA sample construction, save/load, learning, offline, the CLI."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

from recoworld.agents.rliv import FLOAT_RANGES, RLIVAgent, RLIVArgs, RLIVNet  # noqa: E402
from recoworld.agents.rliv_data import (  # noqa: E402
    PairMeetingTracker,
    ReplayBuffer,
    RequestTracker,
    Transitions,
    first_occurrence,
)
from recoworld.errors import ConfigError  # noqa: E402

torch.set_num_threads(1)
ENV_ID = "recoworld/UserAuthor-v0"
TINY = {"n_items": 300, "num_candidates": 20, "n_requests": 20}


def agent_for(args: RLIVArgs | None = None, n_envs: int = 4, seed: int = 0, **env) -> RLIVAgent:
    return RLIVAgent.for_env(ENV_ID, n_envs, seed, args or RLIVArgs(hidden=16), **{**TINY, **env})


# ------------------------------------------------------------------------------ shapes
def test_network_and_agent_shapes():
    net = RLIVNet(12, 8)
    q, aux = net(torch.zeros(7, 12))
    assert q.shape == aux.shape == (7, 3)
    agent = agent_for()
    obs = agent.env.reset()
    x = agent.inputs(obs)
    assert x.shape == (4, 20, agent.in_dim) and agent.in_dim == 42 + obs["user"].shape[1]
    assert agent.score(obs).shape == (4, 20)
    action, _ = agent.predict(obs)
    assert action.shape == (4, 5) and action.dtype.kind == "i"
    assert all(len(set(row)) == 5 for row in action.tolist())  # no repeats
    single, _ = agent.predict({k: v[0] for k, v in obs.items()})
    np.testing.assert_array_equal(single, action[0])
    rec = agent.recommend(obs, {})
    assert rec.deterministic and rec.propensity.shape == (4, 5)


def test_greedy_slate_is_the_top_scores():
    agent = agent_for()
    obs = agent.env.reset()
    scores = agent.score(obs)
    action, _ = agent.predict(obs)
    top = np.sort(np.argsort(-scores, 1)[:, :5], 1)
    np.testing.assert_array_equal(np.sort(action, 1), top)


# ----------------------------------------------------------------- ASA on a hand-made log
def rows(t: int, k: int = 4) -> np.ndarray:
    """State rows that say which request and candidate they are: row[t, k] = [t, k]."""
    return np.array([[[t, j] for j in range(k)]], np.float32)


def test_asa_next_state_is_the_pairs_next_observation():
    tr = PairMeetingTracker(n=1, n_authors=10, dim=2)
    no = np.zeros(1, bool)
    one = np.ones((1, 1), bool)
    click = np.array([[[1.0, 0.0, 0.0]]], np.float32)
    quiet = np.zeros((1, 1, 3), np.float32)
    # request 0: candidates of authors 0..3; author 1 is shown and clicked
    out = tr.step(rows(0), np.array([[0, 1, 2, 3]]), np.array([[1]]), click, one, no)
    assert len(out) == 0
    # request 1: author 1 is not among the candidates; author 4 is shown
    out = tr.step(rows(1), np.array([[4, 5, 6, 7]]), np.array([[0]]), quiet, one, no)
    assert len(out) == 0
    # request 2: author 1 is observed twice (candidates 0 and 1): s' is its first row, [2, 0],
    # although the agent shows author 8 instead
    out = tr.step(rows(2), np.array([[1, 1, 8, 9]]), np.array([[2]]), quiet, one, no)
    assert len(out) == 1
    np.testing.assert_array_equal(out.s, [[0, 1]])
    np.testing.assert_array_equal(out.r, [[1, 0, 0]])
    np.testing.assert_array_equal(out.s2, [[2, 0]])
    np.testing.assert_array_equal(out.done, [0])
    # request 3 ends the episode: author 4 (never seen again), author 8 (shown at 2) and the
    # pair shown now (author 3) end with done = 1, in author order; author 4 is observed here
    # first, so it gets an s'
    out = tr.step(rows(3), np.array([[4, 3, 3, 2]]), np.array([[1]]), click, one, np.ones(1, bool))
    assert len(out) == 3
    np.testing.assert_array_equal(out.s, [[1, 0], [3, 1], [2, 2]])
    np.testing.assert_array_equal(out.s2, [[3, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(out.done, [0, 1, 1])
    np.testing.assert_array_equal(out.r, [[0, 0, 0], [1, 0, 0], [0, 0, 0]])
    assert not tr.on.any()


def test_a_pair_shown_twice_in_a_request_meets_once_with_summed_signals():
    tr = PairMeetingTracker(n=1, n_authors=5, dim=2)
    sig = np.array([[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]], np.float32)
    tr.step(rows(0), np.array([[2, 2, 3, 4]]), np.array([[0, 1]]), sig, np.ones((1, 2), bool),
            np.zeros(1, bool))  # fmt: skip
    out = tr.step(rows(1), np.array([[2, 0, 0, 0]]), np.array([[3]]), np.zeros((1, 1, 3)),
                  np.ones((1, 1), bool), np.zeros(1, bool))  # fmt: skip
    assert len(out) == 1
    np.testing.assert_array_equal(out.r, [[1, 1, 0]])
    np.testing.assert_array_equal(out.s2, [[1, 0]])


def test_request_tracker_uses_the_next_requests_first_slot():
    tr = RequestTracker(n=1, slate_size=2, dim=2)
    sig = np.zeros((1, 2, 3), np.float32)
    sig[0, 1, 0] = 1.0
    valid = np.ones((1, 2), bool)
    assert len(tr.step(rows(0), None, np.array([[3, 1]]), sig, valid, np.zeros(1, bool))) == 0
    out = tr.step(rows(1), None, np.array([[2, 0]]), sig * 0, valid, np.ones(1, bool))
    # two samples for request 0 (next state: request 1's first shown row), two terminal ones
    np.testing.assert_array_equal(out.s, [[0, 3], [0, 1], [1, 2], [1, 0]])
    np.testing.assert_array_equal(out.s2, [[1, 2], [1, 2], [0, 0], [0, 0]])
    np.testing.assert_array_equal(out.done, [0, 0, 1, 1])
    np.testing.assert_array_equal(out.r[:, 0], [0, 1, 0, 0])


def test_first_occurrence_and_replay_buffer():
    np.testing.assert_array_equal(
        first_occurrence(np.array([[3, 1, 3, 1, 2]])), [[True, True, False, False, True]]
    )
    buf = ReplayBuffer(5, 2)
    t = Transitions(np.arange(14, dtype=np.float32).reshape(7, 2), np.zeros((7, 3), np.float32),
                    np.zeros((7, 2), np.float32), np.zeros(7, np.float32))  # fmt: skip
    buf.add(t)
    assert buf.size == 5 and set(buf.s[:, 0].tolist()) == {4, 6, 8, 10, 12}


# ------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path):
    agent = agent_for(RLIVArgs(hidden=16, mtcl=False, gamma=0.8))
    agent.learn(4 * 20 * 3)
    path = tmp_path / "rliv.zip"
    agent.save(path)
    back = RLIVAgent.load(path)
    assert back.args == agent.args and back.num_timesteps == agent.num_timesteps
    obs = agent.env.reset()
    np.testing.assert_array_equal(back.score(obs), agent.score(obs))
    torch.testing.assert_close(back.net.scale, agent.net.scale)


def test_load_refuses_other_zips(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data", json.dumps({"x": 1}))
    with pytest.raises(ConfigError, match=r"not written by RLIVAgent\.save"):
        RLIVAgent.load(path)


# --------------------------------------------------------------------------- learning
def mean_return(agent: RLIVAgent, users: int = 64, seed: int = 999, **env) -> float:
    import gymnasium as gym

    venv = gym.make_vec(ENV_ID, num_envs=users, vectorization_mode="vector_entry_point",
                        **{**TINY, **env})  # fmt: skip
    obs, info = venv.reset(seed=seed)
    total, done = 0.0, np.zeros(users, bool)
    while not done.all():
        obs, reward, term, trunc, info = venv.step(agent.recommend(obs, info).action)
        total += float(reward.sum())
        done |= term | trunc
    return total / users


def test_a_tiny_run_beats_its_initial_policy():
    # 40-request episodes; the untrained agent's slates are about random (return ~13.6), a
    # trained one comes back to the authors a user clicked (~22 after 3,200 steps, seeds 0, 1)
    env = {"n_requests": 40}
    args = RLIVArgs(hidden=32, learning_starts=500, eps_start=0.5)
    agent = agent_for(args, n_envs=16, **env)
    before = mean_return(agent, **env)
    agent.learn(16 * 40 * 5)
    after = mean_return(agent, **env)
    assert after > 1.3 * before, (before, after)


def test_offline_training_from_a_recorded_log(tmp_path):
    from recoworld.agents.base import RandomRecommender

    agent = agent_for(RLIVArgs(hidden=16))
    log = agent.record(4 * 40, RandomRecommender(agent.action_space, seed=0))
    assert len(log) > 0 and log.s.shape[1] == agent.in_dim
    assert agent.num_timesteps == 0  # recording is not training
    log.save(str(tmp_path / "log.npz"))
    loss = agent.fit_offline(tmp_path / "log.npz", n_updates=20)
    assert np.isfinite(loss) and agent.n_updates == 20
    assert agent.buffer.size == len(log)
    other = Transitions(np.zeros((3, 5), np.float32), np.zeros((3, 3), np.float32),
                        np.zeros((3, 5), np.float32), np.zeros(3, np.float32))  # fmt: skip
    with pytest.raises(ConfigError, match="5 features but this agent takes"):
        agent.fit_offline(other, 1)


def test_offline_training_beats_the_initial_policy():
    # a random logging policy's run (16 users x 5 episodes of 40 requests) -> 600 offline
    # updates: the greedy policy's return on fresh users rises from ~11.4 to ~14.6 (seed 0;
    # seeds 0-6 all gain 22-89%); the untrained policy ranks about at random
    from recoworld.agents.base import RandomRecommender

    env = {"n_requests": 40}
    agent = agent_for(RLIVArgs(hidden=32, learning_rate=3e-3), n_envs=16, **env)
    before = mean_return(agent, **env)
    log = agent.record(16 * 40 * 5, RandomRecommender(agent.action_space, seed=0))
    agent.fit_offline(log, n_updates=600)
    assert agent.num_timesteps == 0
    after = mean_return(agent, **env)
    assert after > 1.15 * before, (before, after)


def test_fit_offline_keeps_the_scales_and_the_online_samples():
    agent = agent_for(RLIVArgs(hidden=16, learning_starts=10))
    agent.learn(4 * 20 * 2)
    assert agent._scaled and agent.n_updates > 0
    scale = agent.net.scale.clone()
    online = agent.buffer.contents()
    obs = agent.env.reset()
    scores = agent.score(obs)
    # offline samples whose spread differs from the online ones (every meeting clicked)
    log = agent.record(4 * 20)
    log = Transitions(log.s, np.ones_like(log.r), log.s2, log.done)
    agent.fit_offline(log, n_updates=1)
    torch.testing.assert_close(agent.net.scale, scale)
    torch.testing.assert_close(agent.target.scale, scale)
    assert agent.buffer.size == len(online) + len(log)
    np.testing.assert_array_equal(agent.buffer.contents().s[: len(online)], online.s)
    np.testing.assert_array_equal(agent.buffer.contents().s[len(online) :], log.s)
    # one small update moves the scores a little; a rescaled head would move them a lot
    np.testing.assert_allclose(agent.score(obs), scores, rtol=0.2, atol=0.2)


def test_fit_offline_on_a_fresh_agent_sets_the_scales_from_the_samples():
    agent = agent_for(RLIVArgs(hidden=16))
    log = agent.record(4 * 40)
    agent.fit_offline(log, n_updates=1)
    expected = np.maximum(log.r.std(0), 0.03)
    np.testing.assert_allclose(agent.net.scale.numpy(), expected, rtol=1e-5)


def test_replay_buffer_grows_keeping_its_samples_in_order():
    buf = ReplayBuffer(4, 1)

    def mk(a):
        z = np.zeros((len(a), 3), np.float32)
        return Transitions(np.array(a, np.float32)[:, None], z, z[:, :1], z[:, 0])

    buf.add(mk([0, 1, 2, 3, 4, 5]))  # wraps: holds 2..5
    np.testing.assert_array_equal(buf.contents().s[:, 0], [2, 3, 4, 5])
    big = buf.grown(7)
    big.add(mk([6, 7, 8]))
    assert big.capacity == 7 and big.size == 7
    np.testing.assert_array_equal(big.contents().s[:, 0], [2, 3, 4, 5, 6, 7, 8])


@pytest.mark.parametrize("n_updates", [0, -1, 1.5, True, "10"])
def test_fit_offline_refuses_a_bad_number_of_updates(n_updates):
    agent = agent_for(RLIVArgs(hidden=16))
    log = agent.record(4 * 20)
    with pytest.raises(ConfigError, match=rf"n_updates={n_updates!r} must be a positive integer"):
        agent.fit_offline(log, n_updates)
    assert agent.n_updates == 0 and agent.buffer.size == 0


class UserIdRecommender:
    """A logging policy that reads the env's info: its slate depends on ``info["user_id"]``."""

    def __init__(self, slate_size: int) -> None:
        self.slate_size, self.seen, self.resets = slate_size, [], []

    def recommend(self, obs, info):
        from recoworld.types import Recommendation

        uid = np.asarray(info["user_id"])
        assert info["candidate_ids"].shape == obs["candidates"].shape[:2]
        assert len(info["instruction"]) == uid.shape[0]
        self.seen.append(uid.copy())
        slate = (uid[:, None] + np.arange(self.slate_size)) % obs["candidates"].shape[1]
        return Recommendation(slate, np.ones(slate.shape))

    def reset(self, mask):
        self.resets.append(np.asarray(mask).copy())


def test_record_passes_the_envs_real_info_to_the_recommender():
    from recoworld.agents.sb3.vec_env import to_sb3_vec_env

    agent = agent_for(RLIVArgs(hidden=16))
    rec = UserIdRecommender(agent.slate_size)
    agent.record(4 * 40, rec)  # two episodes of 20 requests per slot
    seen = np.stack(rec.seen)  # (40, 4)
    twin = to_sb3_vec_env(ENV_ID, 4, 0, **TINY)
    twin.reset()
    np.testing.assert_array_equal(seen[0], [i["user_id"] for i in twin.reset_infos])
    assert (seen[:20] == seen[0]).all() and (seen[20:] == seen[20]).all()
    assert (seen[20] != seen[0]).all()  # the next users after the first episodes
    assert len(rec.resets) == 2 and all(m.all() for m in rec.resets)  # both episode ends
    # the env was stepped with the recommender's slates: a twin stepped with them ends alike
    for uid in seen:
        obs = twin.step((uid[:, None] + np.arange(5)) % 20)[0]
    np.testing.assert_array_equal(agent._last[0]["candidates"], obs["candidates"])


# ------------------------------------------------------------------- user–author only
def test_an_env_without_pair_features_is_refused():
    with pytest.raises(ConfigError, match=r"pair feature columns.*recoworld/UserAuthor-v0"):
        RLIVAgent.for_env("recoworld/Engagement-v0", 2, 0, n_items=300, num_candidates=20)


def test_training_refuses_infos_without_followed_and_gifted():
    from recoworld.agents.sb3.vec_env import to_sb3_vec_env

    agent = agent_for()
    other = to_sb3_vec_env("recoworld/Engagement-v0", 4, 0, n_items=300, num_candidates=20)
    agent.env = other  # past set_env's check, as a non-recoworld env would be
    with pytest.raises(ConfigError, match=r"no followed or gifted in its info.*UserAuthor-v0"):
        agent.learn(8)
    with pytest.raises(ConfigError, match=r"followed.*gifted.*UserAuthor-v0"):
        agent.record(8)


# --------------------------------------------------------------------- torch's RNG
def test_building_an_agent_leaves_torchs_global_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    agent = agent_for(seed=7)
    RLIVAgent(agent.observation_space, agent.action_space, RLIVArgs(hidden=16), seed=3)
    torch.testing.assert_close(torch.rand(5), expected)
    # the weights still follow the agent's seed alone
    same = RLIVAgent(agent.observation_space, agent.action_space, RLIVArgs(hidden=16), seed=7)
    other = RLIVAgent(agent.observation_space, agent.action_space, RLIVArgs(hidden=16), seed=8)
    w = [p.detach() for p in agent.net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(w, same.net.parameters(), strict=True))
    assert not torch.equal(w[0], next(other.net.parameters()))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "dqn"}, r"mode='dqn'; choose one of"),
        ({"gamma": 1.0}, r"gamma=1.0 must be in \[0, 1\)"),
        ({"mode": "myopic", "aux": False}, r"needs aux=True"),
        ({"weights": (1.0, 2.0)}, r"three finite non-negative"),
        ({"hidden": 0}, r"hidden=0 must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RLIVArgs(**kwargs)


BAD_FLOATS = [("0.9x", "is not a finite real number"), (None, "is not a finite real number"),
              (float("nan"), "is not a finite real number"), (float("inf"), "is not a finite"),
              (True, "is not a finite real number"), (-0.5, r"must be in [\[(]0, ")]  # fmt: skip


@pytest.mark.parametrize("name", sorted(FLOAT_RANGES))
@pytest.mark.parametrize(("value", "message"), BAD_FLOATS)
def test_every_float_argument_is_checked(name, value, message):
    with pytest.raises(ConfigError, match=rf"^{name}={value!r} {message}.*give"):
        RLIVArgs(**{name: value})


def test_float_arguments_take_any_real_number():
    args = RLIVArgs(gamma=np.float32(0.5), tau=1, aux_weight=np.int64(2), weights=(1, 2.0, 3))
    assert args.gamma == 0.5 and type(args.gamma) is float and type(args.tau) is float
    assert args.aux_weight == 2.0 and args.weights == (1.0, 2.0, 3.0)
    with pytest.raises(ConfigError, match=r"weights\[1\]='a' is not a finite real number"):
        RLIVArgs(weights=(1.0, "a", 2.0))


def test_variants_have_labels():
    assert RLIVArgs().label == "rliv"
    assert RLIVArgs(mtcl=False).label == "rliv-no-mtcl"
    assert RLIVArgs(aux=False).label == "rliv-no-aux"
    assert RLIVArgs(mode="request").label == "request-rl"
    assert RLIVArgs(mode="myopic").label == "myopic"


# -------------------------------------------------------------------------------- CLI
def test_cli_train_then_evaluate(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from recoworld.cli.main import main

    out = tmp_path / "run"
    argv = ["train", "--algo", "rliv", "--env", ENV_ID, "--timesteps", "160", "--n-envs", "4",
            "--eval-freq", "80", "--eval-episodes", "4", "--no-plot", "--out", str(out),
            "--algo-arg", "hidden=16", "--algo-arg", "learning_starts=50"]  # fmt: skip
    for key, value in TINY.items():
        argv += ["--env-arg", f"{key}={value}"]
    assert main(argv) == 0
    assert (out / "model.zip").is_file() and (out / "episodes.csv").is_file()
    assert "rliv on recoworld/UserAuthor-v0" in capsys.readouterr().out
    from recoworld.agents.sb3 import load_policy
    from recoworld.agents.sb3.vec_env import to_sb3_vec_env

    env = to_sb3_vec_env(ENV_ID, 2, 0, **TINY)
    model = load_policy(out / "model.zip", env)
    assert isinstance(model, RLIVAgent) and model.num_timesteps == 160
    bad = ["train", "--algo", "rliv", "--env", ENV_ID, "--timesteps", "8", "--no-plot",
           "--out", str(tmp_path / "bad"), "--algo-arg", "lr=1"]  # fmt: skip
    assert main(bad) == 2
    assert "unknown rliv arguments ['lr']" in capsys.readouterr().err
    bad[-1] = "gamma=0.9x"
    assert main(bad) == 2
    assert "gamma='0.9x' is not a finite real number" in capsys.readouterr().err
