"""Replaying a log through the user state; inverting the candidate generator's popularity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recoworld.catalog import Catalog
from recoworld.envs.candidates import CandidateMix
from recoworld.replay.calibration.logs import LogArrays
from recoworld.users.parametric import OBS_DECAY
from recoworld.users.params import UserParams

Progress = Callable[[int, int, str], None]


# ------------------------------------------------- the user state replayed from a log
@dataclass(frozen=True)
class Replay:
    """Per-row covariates of the utility and hazard, replayed from the log (arrays ``(n, ...)``).

    Attributes:
        repeat: ``(n, L)`` the item is in the user's recent click history.
        novelty: ``(n, L)`` ``1 - max similarity to the history`` (1 with no history).
        boredom: ``(n, L)`` the user's exposure to the item's topic.
        slate_sim: ``(n, L)`` mean similarity to the rest of the slate.
        satisfaction: ``(n,)`` satisfaction after the step (what the hazard sees).
        staleness: ``(n,)`` at a session's last row, the topic overlap with earlier sessions.
        topic_draws: ``(n_topics,)`` mean share of each topic in the users' observable
            clicked-topic mix before each step (what interest candidates are drawn from).
        cold: share of steps whose user had no click yet (its interest slots hold popular
            items).
    """

    repeat: np.ndarray
    novelty: np.ndarray
    boredom: np.ndarray
    slate_sim: np.ndarray
    satisfaction: np.ndarray
    staleness: np.ndarray
    topic_draws: np.ndarray
    cold: float


def replay_state(
    log: LogArrays,
    catalog: Catalog,
    params: UserParams,
    history: int = 10,
) -> Replay:
    """Replay each user's observable state along its logged rows (vectorised over users).

    Follows the state updates of `ParametricUser.transition` and `end_sessions` that depend
    only on what a log shows (clicks, watch fractions, days): click history, topic exposure
    (decay ``rho``, click share ``alpha_exp``, recovery over the days between sessions),
    satisfaction (``lam``, mean ``expectation``) and the topic mixes behind staleness.

    Args:
        log: the log; catalog: the (fitted) catalog.
        params: scalar parameters of the rules (a base preset's).
        history: H, the click history length.
    """
    n, n_slots = log.slate.shape
    n_topics, emb = catalog.n_topics, catalog.embeddings.astype(np.float64)
    valid = log.valid
    ids = np.maximum(log.slate, 0)
    e = emb[ids]  # (n, L, d)
    m = valid.sum(1)
    total = np.einsum("nld,nl->nd", e, valid.astype(np.float64))
    pair = np.einsum("nld,nd->nl", e, total) - 1.0
    slate_sim = np.where(m[:, None] > 1, pair / np.maximum(m - 1, 1)[:, None], 0.0)
    topics = catalog.topic[ids]
    clicked_any = np.asarray(log.clicks.any(1))
    clicked_item = np.where(clicked_any, ids[np.arange(n), log.clicks.argmax(1)], -1)
    share = np.zeros((n, n_topics))
    np.add.at(share, (np.broadcast_to(np.arange(n)[:, None], ids.shape)[valid], topics[valid]), 1)
    share /= np.maximum(m, 1)[:, None]

    p = params
    n_users = log.n_users
    hist = np.full((n_users, history), -1, np.int64)
    expo = np.zeros((n_users, n_topics))
    sat = np.zeros(n_users)
    mix = np.zeros((n_users, n_topics))
    past = np.zeros((n_users, n_topics))
    click_mix = np.zeros((n_users, n_topics))
    draws = np.zeros(n_topics)
    cold = 0
    last_day = np.zeros(n_users, np.int64)
    repeat = np.zeros((n, n_slots), bool)
    novelty = np.ones((n, n_slots))
    boredom = np.zeros((n, n_slots))
    satisfaction = np.zeros(n)
    stale = np.zeros(n)
    rho, a_exp, lam = float(p.rho), float(p.alpha_exp), float(p.lam)
    expect, recovery = float(p.expectation), float(p.exposure_recovery_days)
    start = np.concatenate([[0], np.flatnonzero(log.user[1:] != log.user[:-1]) + 1])
    rank = np.arange(n) - np.repeat(start, np.diff(np.concatenate([start, [n]])))
    order = np.lexsort((log.user, rank))
    bounds = np.concatenate([[0], np.cumsum(np.bincount(rank))])
    for t in range(bounds.size - 1):  # one step of every user that has a t-th row
        r = order[bounds[t] : bounds[t + 1]]
        u = log.user[r]
        first = log.first[r]
        if first.any():
            fu, fr = u[first], r[first]
            gap = np.maximum(log.day[fr] - last_day[fu], 0)
            expo[fu] *= np.exp(-gap / recovery)[:, None]
            sat[fu] = 0.0
            mix[fu] = 0.0
        h = hist[u]
        hv = h >= 0
        he = emb[np.maximum(h, 0)]  # (m, H, d)
        sim = np.where(hv[:, None, :], np.matmul(e[r], he.transpose(0, 2, 1)), -2.0)
        novelty[r] = np.where(hv.any(1)[:, None], 1.0 - sim.max(2), 1.0)
        repeat[r] = (ids[r][:, :, None] == h[:, None, :]).any(2) & valid[r]
        boredom[r] = np.take_along_axis(expo[u], topics[r], 1)
        cm = click_mix[u]
        mass = cm.sum(1)
        cold += int((mass <= 0).sum())
        draws += (cm[mass > 0] / mass[mass > 0, None]).sum(0)
        # transition
        c = clicked_any[r]
        item = clicked_item[r]
        onehot = np.zeros((r.size, n_topics))
        onehot[np.flatnonzero(c), catalog.topic[item[c]]] = 1.0
        expo[u] = rho * expo[u] + (1 - rho) * (a_exp * onehot + (1 - a_exp) * share[r])
        sat[u] = (1 - lam) * sat[u] + lam * (log.watch[r] - expect)
        satisfaction[r] = sat[u]
        mix[u] += onehot
        click_mix[u] = OBS_DECAY * cm + (1 - OBS_DECAY) * onehot
        shifted = np.concatenate([item[:, None], h[:, :-1]], 1)
        hist[u] = np.where(c[:, None], shifted, h)
        end = log.last[r]
        if end.any():
            eu, er = u[end], r[end]
            num = (mix[eu] * past[eu]).sum(1)
            den = np.linalg.norm(mix[eu], axis=1) * np.linalg.norm(past[eu], axis=1)
            stale[er] = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
            norm = np.linalg.norm(mix[eu], axis=1, keepdims=True)
            past[eu] = 0.5 * past[eu] + 0.5 * mix[eu] / np.maximum(norm, 1e-12)
            last_day[eu] = log.day[er]
    warm = max(n - cold, 1)
    return Replay(repeat, novelty, boredom, slate_sim, satisfaction, stale, draws / warm, cold / n)


def invert_popularity(
    candidate_counts: np.ndarray,
    topic: np.ndarray,
    topic_draws: np.ndarray,
    cold: float,
    n_candidates: int,
    mix: CandidateMix | None = None,
    iters: int = 200,
) -> np.ndarray:
    """Popularity under which the simulator's candidate generator reproduces the logged
    candidate frequencies.

    `recoworld.envs.candidates.CandidateGenerator` fills K slots from three sources: popular
    (``popularity``), interest (a topic from the user's clicked-topic mix, then an item of it
    with probability proportional to ``sqrt(popularity)``; popular items for users without
    clicks) and random (uniform). The expected frequency of item i is therefore
    ``s_pop' p_i + s_int (1 - cold) pi_t sqrt(p_i) / S_t + s_rand / n_items`` (``s_pop'``
    includes the cold interest slots); a damped multiplicative fixed point finds the ``p``
    that matches the logged frequencies (items never a candidate keep a small floor).

    Args:
        candidate_counts: ``(n_items,)`` logged candidate counts.
        topic: ``(n_items,)`` fitted topics. topic_draws: ``(n_topics,)`` and cold: from
            `replay_state`.
        n_candidates: K. mix: the env's candidate mix (default `CandidateMix()`).
        iters: fixed-point iterations.

    Returns:
        ``(n_items,)`` popularity, positive, summing to 1.
    """
    mix = mix or CandidateMix()
    n_items = candidate_counts.shape[0]
    n_int = round(n_candidates * mix.interest)
    n_pop = round(n_candidates * mix.popular)
    n_rand = n_candidates - n_int - n_pop
    s_int, s_pop, s_rand = n_int / n_candidates, n_pop / n_candidates, n_rand / n_candidates
    target = (candidate_counts + 0.1) / (candidate_counts + 0.1).sum()
    n_topics = int(topic.max()) + 1
    pi = np.zeros(n_topics)
    pi[: topic_draws.shape[0]] = topic_draws[:n_topics]
    p = target.copy()
    for _ in range(iters):
        root = np.sqrt(p)
        per_topic = np.bincount(topic, weights=root, minlength=n_topics)
        f = (
            (s_pop + s_int * cold) * p
            + s_int * (1 - cold) * pi[topic] * root / np.maximum(per_topic[topic], 1e-300)
            + s_rand / n_items
        )
        p = p * np.sqrt(target / np.maximum(f, 1e-300))
        p = np.maximum(p, 1e-12)
        p /= p.sum()
    return p
