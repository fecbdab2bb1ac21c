"""InstructionFollowingRecommender: re-ranking by kind, strength 0, compliance, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium import spaces

from recoworld.agents import PopularityRecommender, make_recommender
from recoworld.agents.base import env_action_space
from recoworld.agents.instruction import (
    InstructionFollowingRecommender,
    instruction_relevance,
    rank_normalise,
)
from recoworld.envs import RecoVectorEnv
from recoworld.errors import ConfigError
from recoworld.types import InstructionKind, Recommendation
from recoworld.users import instructions as ins

DIM, K, L = 4, 6, 2
E = np.eye(DIM)


class Ordered:
    """A base that prefers candidate 0, then 1, ... (scores K - index)."""

    slate_size = L

    def __init__(self) -> None:
        self.calls: list[str] = []

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        self.calls.append("score")
        return np.tile(np.arange(K, 0, -1, dtype=float), (obs["candidates"].shape[0], 1))

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        self.calls.append("recommend")
        n = obs["candidates"].shape[0]
        return Recommendation(np.tile(np.arange(L), (n, 1)), np.full((n, L), 0.5))


class NoScore:
    """A base without score(): its slate is candidates 0 and 1."""

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        n = obs["candidates"].shape[0]
        return Recommendation(np.tile(np.arange(L), (n, 1)), np.ones((n, L)), True)


def observation(
    kind: int,
    embeddings: list[np.ndarray],
    new: tuple[int, ...] = (),
    topic: np.ndarray | None = None,
    item: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One user's batched observation with K candidates and an active instruction."""
    cand = np.zeros((1, K, DIM + 5), np.float32)
    cand[0, :, :DIM] = np.asarray(embeddings)
    cand[0, list(new), DIM + 3] = 1.0
    instr = np.zeros((1, 4 + 2 * DIM + 1), np.float32)
    if kind:
        instr[0, kind - 1] = 1.0
        instr[0, -1] = 0.2
    if topic is not None:
        instr[0, 4 : 4 + DIM] = topic
    if item is not None:
        instr[0, 4 + DIM : 4 + 2 * DIM] = item
    return {"candidates": cand, "instruction": instr, "user": np.zeros((1, 3), np.float32)}


def slate(kind: int, **kw: Any) -> list[int]:
    rec = InstructionFollowingRecommender(Ordered())
    obs = observation(kind, **kw)
    return sorted(rec.recommend(obs, {}).action[0].tolist())


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


# topic "e0" vs others; candidates 3 and 4 are on topic e0, the base prefers 0, 1, 2, ...
MIXED = [E[1], E[2], E[3], unit(E[0] + 0.2 * E[1]), unit(E[0] + 0.3 * E[2]), E[2]]


def test_more_of_topic_brings_on_topic_candidates_to_the_top() -> None:
    assert slate(InstructionKind.MORE_OF_TOPIC, embeddings=MIXED, topic=E[0]) == [3, 4]


def test_less_of_topic_drops_on_topic_candidates() -> None:
    on_first = [MIXED[3], MIXED[4], E[1], E[2], E[3], E[1]]  # the base's favourites are on topic
    assert slate(InstructionKind.LESS_OF_TOPIC, embeddings=on_first, topic=E[0]) == [2, 3]


def test_something_new_prefers_topic_new_candidates() -> None:
    assert slate(InstructionKind.SOMETHING_NEW, embeddings=MIXED, new=(4, 5)) == [4, 5]


def test_more_like_item_prefers_similar_candidates_but_not_the_item_itself() -> None:
    liked = unit(E[0] + 0.2 * E[1])
    emb = [E[1], liked, E[3], E[2], unit(liked + 0.3 * E[3]), unit(liked + 0.2 * E[2])]
    # candidate 1 is the liked item itself (shown already): the similar 4 and 5 win
    assert slate(InstructionKind.MORE_LIKE_ITEM, embeddings=emb, item=liked) == [4, 5]


def test_no_instruction_and_strength_zero_return_the_base_unchanged() -> None:
    base = Ordered()
    obs = observation(InstructionKind.MORE_OF_TOPIC, embeddings=MIXED, topic=E[0])
    out = InstructionFollowingRecommender(base, strength=0).recommend(obs, {})
    assert out.action.tolist() == [[0, 1]] and out.propensity.tolist() == [[0.5, 0.5]]
    out = InstructionFollowingRecommender(base).recommend(observation(0, embeddings=MIXED), {})
    assert out.action.tolist() == [[0, 1]] and out.propensity.tolist() == [[0.5, 0.5]]
    assert base.calls == ["recommend", "recommend"]  # one base call per step


def test_the_base_is_scored_once_per_step_when_re_ranking() -> None:
    base = Ordered()
    rec = InstructionFollowingRecommender(base)
    out = rec.recommend(observation(1, embeddings=MIXED, topic=E[0]), {})
    assert base.calls == ["score"]
    assert out.deterministic and out.propensity.tolist() == [[1.0, 1.0]]
    assert rec.reranked.tolist() == [True]


def test_a_base_without_score_is_re_ranked_from_its_slate() -> None:
    rec = InstructionFollowingRecommender(NoScore())
    obs = observation(InstructionKind.MORE_OF_TOPIC, embeddings=MIXED, topic=E[0])
    assert sorted(rec.recommend(obs, {}).action[0].tolist()) == [3, 4]
    obs = observation(0, embeddings=MIXED)
    assert rec.recommend(obs, {}).action.tolist() == [[0, 1]]


def test_strength_trades_base_rank_for_relevance() -> None:
    # candidate 5 is mildly on topic (cosine 0.3) and ranked last by the base
    emb = [E[1], E[2], E[3], E[1], E[2], unit(0.3 * E[0] + 0.95 * E[1])]
    obs = observation(InstructionKind.MORE_OF_TOPIC, embeddings=emb, topic=E[0])
    picks = {
        s: InstructionFollowingRecommender(Ordered(), s).recommend(obs, {}).action[0].tolist()
        for s in (0.5, 5.0)
    }
    assert 5 not in picks[0.5] and 5 in picks[5.0]


def test_rank_normalise_maps_to_unit_interval_with_shared_ties() -> None:
    r = rank_normalise(np.array([[3.0, 1.0, 2.0, 2.0, 0.0]]))
    np.testing.assert_allclose(r, [[1.0, 0.25, 0.625, 0.625, 0.0]])
    assert rank_normalise(np.array([[7.0]])).tolist() == [[0.5]]


def test_relevance_reads_the_observation_encoding() -> None:
    rel, active = instruction_relevance(observation(1, embeddings=MIXED, topic=E[0]))
    assert active.tolist() == [True]
    assert rel[0, 3] > 0.9 and rel[0, 4] > 0.9 and np.abs(rel[0, [0, 1, 2, 5]]).max() < 1e-6
    rel, active = instruction_relevance(observation(0, embeddings=MIXED))
    assert active.tolist() == [False] and not rel.any()


def test_registered_wrappers() -> None:
    env = RecoVectorEnv(2, n_items=100, num_candidates=10)
    rec = make_recommender("instruction_popularity", env)
    assert isinstance(rec, InstructionFollowingRecommender)
    assert isinstance(rec.base, PopularityRecommender) and rec.slate_size == 5
    assert isinstance(
        make_recommender("instruction_random", env, 0), InstructionFollowingRecommender
    )


class Similar:
    """Slates most similar to the user's recent clicks: narrow, so users speak up often."""

    def __init__(self, dim: int, slate_size: int = 5) -> None:
        self.dim, self.slate_size = dim, slate_size

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        user = obs["user"][:, -self.dim :]
        return np.einsum("nkd,nd->nk", obs["candidates"][:, :, : self.dim], user)

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        idx = np.argsort(-self.score(obs, info), axis=1, kind="stable")[:, : self.slate_size]
        return Recommendation(idx[:, 0] if self.slate_size == 1 else idx, np.ones(idx.shape), True)


def ignored_share(rec: Any, env: RecoVectorEnv, steps: int) -> tuple[float, int]:
    """Share of steps with an active instruction whose slate ignored it (hidden state: test
    only), and the number of such steps."""
    obs, info = env.reset(seed=0)
    catalog, n = env.catalog, env.num_envs
    active = ignored = 0
    for _ in range(steps):
        st = env.core.state
        before = (st.instr_kind.copy(), st.instr_topic.copy(), st.instr_item.copy())
        familiar, cand = st.familiar.copy(), env.core.candidates.copy()
        action = rec.recommend(obs, info).action
        shown = cand[np.arange(n)[:, None], action]
        ign = ins.ignored_instruction(
            *before, shown, catalog.topic[shown], np.ones(shown.shape, bool), familiar
        )
        live = (before[0] > 0) & ~env._autoreset  # an autoreset step shows nothing
        active += int(live.sum())
        ignored += int((ign & live).sum())
        obs, *_, info = env.step(action)
    return ignored / max(active, 1), active


def test_the_slate_follows_the_user_model_rules_most_of_the_time() -> None:
    env = RecoVectorEnv(64, users="retention", multi_session=True, horizon_days=3)
    base_ignored, n_active = ignored_share(Similar(env.catalog.dim), env, 120)
    wrapped = InstructionFollowingRecommender(Similar(env.catalog.dim))
    followed_ignored, n_followed = ignored_share(wrapped, env, 120)
    assert n_active > 100 and n_followed > 100
    assert base_ignored > 0.5
    assert followed_ignored < 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strength": -1.0}, "strength=-1.0 must be a finite number >= 0"),
        ({"strength": float("nan")}, "strength=nan"),
        ({"strength": "high"}, "strength='high'"),
        ({"strength": True}, "strength=True"),
        ({"base": object()}, "is not a Recommender"),
        ({"action_space": spaces.Box(-1, 1, (3,))}, "action_type='indices'"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    args = {"base": Ordered(), **kwargs}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        InstructionFollowingRecommender(**args)


def test_a_foreign_observation_is_rejected() -> None:
    rec = InstructionFollowingRecommender(Ordered())
    obs = observation(1, embeddings=MIXED, topic=E[0])
    with pytest.raises(ConfigError, match="4 \\+ 2 dim \\+ 1"):
        rec.recommend({**obs, "instruction": np.ones((1, 6), np.float32)}, {})
    with pytest.raises(ConfigError, match="batch_single"):
        rec.recommend({**obs, "candidates": obs["candidates"][0]}, {})


def test_learning_and_per_user_calls_reach_the_base() -> None:
    class Spy(Ordered):
        def update(self, *args: Any) -> None:
            self.calls.append("update")

        def reset(self, mask: Any = None) -> None:
            self.calls.append("reset")

        def select(self, keep: Any) -> None:
            self.calls.append("select")

    base = Spy()
    rec = InstructionFollowingRecommender(base)
    rec.update({}, {}, np.zeros((1, L), int), {})
    rec.reset(np.array([True]))
    rec.select(np.array([0]))
    assert base.calls == ["update", "reset", "select"]
    InstructionFollowingRecommender(NoScore()).reset()  # a base without them is fine


def test_a_scoring_base_without_slate_size_needs_the_action_space() -> None:
    class Bare:
        def score(self, obs: Any, info: Any) -> np.ndarray:
            return np.zeros((1, K))

        def recommend(self, obs: Any, info: Any) -> Recommendation:
            raise AssertionError("not called")

    obs = observation(1, embeddings=MIXED, topic=E[0])
    with pytest.raises(ConfigError, match=r"action_space=env\.single_action_space"):
        InstructionFollowingRecommender(Bare()).recommend(obs, {})
    rec = InstructionFollowingRecommender(Bare(), action_space=spaces.MultiDiscrete([K] * L))
    assert sorted(rec.recommend(obs, {}).action[0].tolist()) == [3, 4]
    with pytest.raises(ConfigError, match="has no score"):
        InstructionFollowingRecommender(NoScore()).score(obs, {})


@pytest.mark.parametrize(
    "spec",
    [
        "instruction_popularity",
        "instruction_random",
        lambda env, seed: InstructionFollowingRecommender(
            Similar(env.unwrapped.catalog.dim, len(getattr(env_action_space(env), "nvec", [0])))
        ),
    ],
    ids=["instruction_popularity", "instruction_random", "similar-base"],
)
def test_conformance(spec: Any) -> None:
    from recoworld.testing.recommender import check_recommender

    check_recommender(spec, "recoworld/Retention-v0", n_steps=60, horizon_days=3)
