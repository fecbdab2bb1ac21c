"""Calibrate a parametric population from logged sessions, and report its fidelity.

`calibrate` fits, from a log in the schema of `recoworld.replay.schema`, the parts of the
parametric user (USER_MODEL.md) and of the catalog that a log identifies, and keeps the other
user parameters at a base preset's values (``base``, default `engagement`):

1. **Item embeddings** by matrix factorisation of the users' click profiles (`factorise_clicks`:
   a sparse randomised truncated SVD, PureSVD-style; numpy only): items clicked by the same
   users point the same way. **Topics** by spherical k-means over them.
2. **The rest of the catalog**: popularity such that the simulator's candidate generator
   reproduces the logged candidate frequencies (`invert_popularity`); length from
   ``watch_time / watch_fraction`` of clicked items; quality from step 3.
3. **User interests, choice temperature and no-click utility** by maximum likelihood of the
   multinomial logit over the logged slates (one click or none per step), with the base's
   utility weights applied to the fitted catalog and to the user state replayed from the log
   (`replay_state`: click history, topic exposure, slate similarity, position). A user's
   interest is integrated over M draws of the population's interest prior (`MixedLogit`, fitted
   by EM): plugging in a noisy per-user estimate instead biases ``tau`` and ``u0``, because the
   simulator draws its users from the prior. Item effects first (they become quality), then
   ``(tau, u0)`` by 2-D Newton.
4. **Watch fraction** (``alpha0``, ``alpha1``, ``watch_noise``) by least squares of
   ``logit(w)`` on the clicked item's posterior-mean ``U - u0`` (the maximum likelihood of the
   model's Gaussian noise).
5. **Leave hazard** (``h0``, ``h_fatigue``, ``h_sat``) by maximum likelihood of the logged
   session lengths: a discrete-time hazard, logistic in the step and in the satisfaction
   replayed from the logged watch fractions (Newton / IRLS).
6. **Return gaps and churn** (``return_mean``, ``churn0``) by maximum likelihood of the logged
   gaps (``1 + Geometric`` with mean ``return_mean * exp(-kappa_sat S + kappa_stale z)``, the
   base's log-normal spread of each user's ``return_mean`` integrated out per user by
   Gauss-Hermite quadrature) and churns (a gap past ``max_gap`` or the satisfaction-driven
   churn draw).

Where a log does not identify the model, the base's values stay: the utility weights
(``beta_*``), the interest prior (``n_interests``, ``interest_noise``; topics are the fitted
ones), satisfaction's ``lam`` and ``expectation``, fatigue scale, staleness and instruction
rules; the hidden session propensity enters the novelty term at its population mean. The
result is a `Population` and a `Catalog` for ``simulate(**result.simulate_kwargs(), ...)`` or
``RecoVectorEnv(users=result.population, catalog=result.catalog, ...)``.

`fidelity_report` compares a log with a simulated one: the held-out click-prediction AUC of the
fit, and the logged vs simulated distributions of per-session CTR, session length and return
gaps with two-sample Kolmogorov-Smirnov statistics, as a table and a PNG.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recoworld import rng as streams
from recoworld.catalog import Catalog
from recoworld.envs.candidates import CandidateMix
from recoworld.errors import ConfigError, ReplayDataError, require
from recoworld.users.parametric import OBS_DECAY, ParametricUser
from recoworld.users.params import UserParams
from recoworld.users.population import Population

Progress = Callable[[int, int, str], None]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# ----------------------------------------------------------------- the log's arrays
@dataclass(frozen=True)
class LogArrays:
    """A log as the arrays calibration needs, rows sorted by (user, session, step).

    Attributes:
        user: ``(n,)`` dense user index ``0 .. n_users - 1`` (a recommender's copy of a user is
            a separate user: its history differs).
        session, step, day: ``(n,)`` int64.
        slate: ``(n, L)`` int64 item ids, -1 where no item was shown.
        clicks: ``(n, L)`` bool.
        watch: ``(n,)`` float64 watch fraction of the clicked item (0 without a click).
        watch_time: ``(n,)`` float64 seconds.
        left, churned: ``(n,)`` bool. return_days: ``(n,)`` int64 (-1 unless returning).
        first, last: ``(n,)`` bool, the first and last row of a session.
        n_items: item ids lie in ``[0, n_items)``.
        n_candidates: K, the widest logged candidate set.
        candidate_counts: ``(n_items,)`` how often each item was a logged candidate.
    """

    user: np.ndarray
    session: np.ndarray
    step: np.ndarray
    day: np.ndarray
    slate: np.ndarray
    clicks: np.ndarray
    watch: np.ndarray
    watch_time: np.ndarray
    left: np.ndarray
    churned: np.ndarray
    return_days: np.ndarray
    first: np.ndarray
    last: np.ndarray
    n_items: int
    n_candidates: int
    candidate_counts: np.ndarray

    @property
    def n(self) -> int:
        return int(self.user.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user.max()) + 1 if self.n else 0

    @property
    def valid(self) -> np.ndarray:
        """``(n, L)`` bool: the slot showed an item."""
        return self.slate >= 0

    @classmethod
    def from_log(
        cls, log: Any, *, n_items: int | None = None, recommender: str | None = None
    ) -> LogArrays:
        """From a path, a DataFrame in the log schema or a `Sessions`.

        Args:
            log: the log.
            n_items: the catalog size (default: the largest logged item id + 1).
            recommender: keep only this recommender's rows.
        """
        from recoworld.replay.validation import as_sessions

        s = as_sessions(log)
        if recommender is not None:
            s = s.take(np.flatnonzero(s.recommender == recommender))
        if s.n_steps == 0:
            raise ReplayDataError("the log has no rows to calibrate from")
        rec_code = np.unique(s.recommender, return_inverse=True)[1]
        uid = np.asarray(s.user_id, np.int64)
        key = np.stack([rec_code, uid], 1)
        order = np.lexsort((s.step, s.session, uid, rec_code))
        _, user = np.unique(key[order], axis=0, return_inverse=True)
        slate = np.asarray(s.slate_ids, np.int64)[order]
        slate = np.where(s.slate_mask()[order], slate, -1)
        top = int(slate.max()) + 1 if (slate >= 0).any() else 1
        if n_items is None:
            n_items = top
        elif top > n_items:
            raise ReplayDataError(
                f"the log's 'slate_ids' reach item {top - 1} but n_items={n_items}; pass the "
                "catalog size the log was made with"
            )
        cand = np.asarray(s.candidate_ids, np.int64)
        if cand.size and cand.max() >= n_items:
            raise ReplayDataError(
                f"the log's 'candidate_ids' reach item {int(cand.max())} but n_items={n_items}"
            )
        session = np.asarray(s.session, np.int64)[order]
        user = user.reshape(-1).astype(np.int64)
        new = np.ones(user.size, bool)
        new[1:] = (user[1:] != user[:-1]) | (session[1:] != session[:-1])
        last = np.ones(user.size, bool)
        last[:-1] = new[1:]
        return cls(
            user=user,
            session=session,
            step=np.asarray(s.step, np.int64)[order],
            day=np.asarray(s.day, np.int64)[order],
            slate=slate,
            clicks=np.asarray(s.clicks, bool)[order] & (slate >= 0),
            watch=np.nan_to_num(np.asarray(s.watch_fraction, np.float64)[order]),
            watch_time=np.nan_to_num(np.asarray(s.watch_time, np.float64)[order]),
            left=np.asarray(s.left, bool)[order],
            churned=np.asarray(s.churned, bool)[order],
            return_days=np.asarray(s.return_days, np.int64)[order],
            first=new,
            last=last,
            n_items=int(n_items),
            n_candidates=int((cand >= 0).sum(1).max()),
            candidate_counts=np.bincount(cand[cand >= 0], minlength=n_items)[:n_items],
        )


# ------------------------------------------------------ 1. matrix factorisation
def _coo_matmul(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, x: np.ndarray, size: int
) -> np.ndarray:
    """``A @ x`` for a sparse ``A`` as COO triplets; ``x`` ``(n_cols, k)`` -> ``(size, k)``."""
    contrib = vals[:, None] * x[cols]
    return np.stack(
        [np.bincount(rows, weights=contrib[:, j], minlength=size) for j in range(x.shape[1])], 1
    )


def factorise_clicks(
    log: LogArrays, dim: int, *, rows: np.ndarray | None = None, seed: int = 0, power: int = 3
) -> np.ndarray:
    """Item embeddings from the users' click profiles.

    A truncated SVD (randomised, sparse: the ``(n_users, n_items)`` matrix is never formed)
    of each user's clicks normalised to sum 1 and centred per item, an implicit-feedback
    matrix factorisation in the PureSVD family: items clicked by the same users point the same
    way. Item embeddings are the right singular vectors scaled by the singular values, then
    normalised to unit length (items never clicked get a random direction). Users' interests
    are not taken from here but integrated over the prior (`MixedLogit`).

    Args:
        log: the log. dim: embedding dimension.
        rows: ``(n,)`` bool, the rows to learn from (default all).
        seed: seed of the random projections.
        power: power iterations of the randomised SVD.

    Returns:
        ``(n_items, dim)`` float64 unit item embeddings.
    """
    valid = log.clicks & (rows[:, None] if rows is not None else True)
    r_idx, slot = np.nonzero(valid)
    users, items = log.user[r_idx], log.slate[r_idx, slot]
    n_users, n_items = log.n_users, log.n_items
    per_user = np.bincount(users, minlength=n_users).astype(np.float64)
    vals = 1.0 / per_user[users]
    mean = np.bincount(items, weights=vals, minlength=n_items) / max(n_users, 1)
    gen = np.random.default_rng(seed)
    k = min(dim + 8, n_items, max(n_users, 1))

    def right(x: np.ndarray) -> np.ndarray:  # M @ x, M = A - 1 mean^T
        return _coo_matmul(users, items, vals, x, n_users) - (mean @ x)[None, :]

    def left(y: np.ndarray) -> np.ndarray:  # M^T @ y
        return _coo_matmul(items, users, vals, y, n_items) - np.outer(mean, y.sum(0))

    q = np.linalg.qr(right(gen.standard_normal((n_items, k))))[0]
    for _ in range(power):
        q = np.linalg.qr(right(np.linalg.qr(left(q))[0]))[0]
    b = left(q).T  # (k, n_items) = Q^T M
    _, s, vt = np.linalg.svd(b, full_matrices=False)
    emb = np.zeros((n_items, dim))
    d = min(dim, vt.shape[0])
    emb[:, :d] = vt[:d].T * s[:d]
    norm = np.linalg.norm(emb, axis=1)
    dead = norm < 1e-9 * max(float(norm.max(initial=0.0)), 1e-300)
    emb[dead] = gen.standard_normal((int(dead.sum()), dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb


def spherical_kmeans(
    x: np.ndarray, k: int, seed: int = 0, iters: int = 50, restarts: int = 8
) -> np.ndarray:
    """Cluster unit vectors ``(n, d)`` into ``k`` clusters by cosine: k-means++ seeding, the
    best of ``restarts`` runs by total within-cluster cosine.

    Returns:
        ``(n,)`` int cluster ids ``0 .. k - 1``, every cluster non-empty.
    """
    n = x.shape[0]
    k = max(1, min(k, n))
    gen = np.random.default_rng(seed)
    best, best_score = np.zeros(n, np.int64), -np.inf
    for _ in range(restarts):
        label, score = _kmeans_once(x, k, gen, iters)
        if score > best_score:
            best, best_score = label, score
    return best


def _kmeans_once(
    x: np.ndarray, k: int, gen: np.random.Generator, iters: int
) -> tuple[np.ndarray, float]:
    n = x.shape[0]
    centres = [x[gen.integers(n)]]
    for _ in range(1, k):  # k-means++ over cosine distance
        dist = np.maximum(1.0 - np.max(x @ np.array(centres).T, axis=1), 0.0)
        total = dist.sum()
        pick = gen.choice(n, p=dist / total) if total > 0 else gen.integers(n)
        centres.append(x[pick])
    c = np.array(centres)
    label = np.full(n, -1, np.int64)
    for _ in range(iters):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, label):
            break
        label = new
        for j in range(k):  # k is small; an empty cluster takes the worst-fitting point
            members = label == j
            if not members.any():
                worst = int(np.argmin(np.max(x @ c.T, axis=1)))
                label[worst] = j
                members = label == j
            s = x[members].sum(0)
            c[j] = s / max(np.linalg.norm(s), 1e-12)
    return label, float((x * c[label]).sum())


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


# ----------------------------------------------------------- 3. the choice model
class MixedLogit:
    """The multinomial logit of the logged choices with each user's interest integrated over a
    discretised prior (a mixed logit fitted by EM).

    The logit of the item i at row r, slot k, for a user whose interest is the prior's m-th
    draw ``theta_m``, is ``alpha (beta_aff theta_m . e_i + offset_rk + c_i) + b_i - gamma``;
    no click has logit 0. A user's posterior over the M draws is proportional to the
    likelihood of its fitted rows. Integrating the interest out, instead of plugging in a noisy
    per-user estimate, keeps the fitted temperature and no-click utility unbiased, and matches
    the simulator, which draws its users from the same prior.

    Args:
        affinity: ``(M, n_items)`` ``theta_m . e_i`` of the prior's draws.
        ids: ``(n, L)`` item ids (>= 0). valid: ``(n, L)``. clicks: ``(n, L)``.
        user: ``(n,)`` dense user index, rows sorted by user. n_users: users.
        offset: ``(n, L)`` the other utility terms (state and position).
        beta_aff: the affinity weight. fit_rows: ``(n,)`` rows whose choices are fitted.
    """

    CHUNK = 4096  # rows whose (rows, L, M) arrays are held at once

    def __init__(
        self,
        affinity: np.ndarray,
        ids: np.ndarray,
        valid: np.ndarray,
        clicks: np.ndarray,
        user: np.ndarray,
        n_users: int,
        offset: np.ndarray,
        beta_aff: float,
        fit_rows: np.ndarray,
    ) -> None:
        self.aff, self.ids, self.valid = affinity, ids, valid
        self.clicks = clicks & valid
        self.user, self.n_users, self.offset = user, n_users, offset
        self.beta_aff, self.fit_rows = beta_aff, fit_rows
        self.n_items = affinity.shape[1]
        self.weights = np.full((n_users, affinity.shape[0]), 1.0 / affinity.shape[0])
        self.log_likelihood = float("nan")

    def _pass(self, alpha: float, c: np.ndarray, b: np.ndarray, gamma: float) -> dict[str, Any]:
        """One pass over the fitted rows: per-user log-likelihoods ``(n_users, M)`` and, under
        the current posterior weights, the gradient and information (negative Hessian) of
        ``alpha``, ``gamma`` and the item effects (``gb``, ``ib`` diagonal, ``iab`` the
        ``alpha``-``b`` cross terms)."""
        # the (rows, L, M) arrays are float32 (half the memory traffic); sums are float64
        aff_t = np.ascontiguousarray(self.aff.T, dtype=np.float32)  # (n_items, M)
        e_aff = np.exp(np.float32(alpha * self.beta_aff) * aff_t)
        loglik = np.zeros((self.n_users, aff_t.shape[1]))
        acc = dict.fromkeys(("ga", "gg", "iaa", "iag", "igg"), 0.0)
        gb, ib, iab = (np.zeros(self.n_items) for _ in range(3))
        rows = np.flatnonzero(self.fit_rows)
        f64 = np.float64
        for lo in range(0, rows.size, self.CHUNK):
            r = rows[lo : lo + self.CHUNK]
            ids, valid, y, user = self.ids[r], self.valid[r], self.clicks[r], self.user[r]
            idx = np.arange(r.size)
            offc = np.where(valid, self.offset[r] + c[ids], 0.0)
            base = np.where(valid, alpha * offc + b[ids] - gamma, -np.inf)
            top = np.maximum(base.max(1), 0.0)
            ex = e_aff[ids] * np.exp(base - top[:, None]).astype(np.float32)[:, :, None]
            den = ex.sum(1, dtype=f64) + np.exp(-top)[:, None]  # (R, M)
            prob = ex / den[:, None, :].astype(np.float32)
            v = offc.astype(np.float32)[:, :, None] + np.float32(self.beta_aff) * aff_t[ids]
            hit = y.any(1)
            slot = y.argmax(1)
            c1 = np.where(hit[:, None], v[idx, slot], 0.0)  # (R, M)
            b_hit = (b[ids] - gamma)[idx, slot]
            ll = np.where(hit[:, None], alpha * c1 + b_hit[:, None], 0.0) - top[:, None]
            ll -= np.log(den)
            starts = np.concatenate([[0], np.flatnonzero(np.diff(user)) + 1])
            loglik[user[starts]] += np.add.reduceat(ll, starts, axis=0)
            w = self.weights[user]  # (R, M)
            pv = prob * v
            s0, s1 = prob.sum(1, dtype=f64), pv.sum(1, dtype=f64)
            s2 = (pv * v).sum(1, dtype=f64)
            acc["ga"] += float((w * (c1 - s1)).sum())
            acc["gg"] += float(-(w * (hit[:, None] - s0)).sum())
            acc["iaa"] += float((w * (s2 - s1 * s1)).sum())
            acc["iag"] += float((w * (s0 * s1 - s1)).sum())
            acc["igg"] += float((w * (s0 - s0 * s0)).sum())
            wp = prob * w.astype(np.float32)[:, None, :]
            flat = ids[valid]
            p_w = wp.sum(2, dtype=f64)
            gb += np.bincount(flat, weights=(y - p_w)[valid], minlength=self.n_items)
            curv = p_w - np.einsum("rlm,rlm->rl", wp, prob, dtype=f64)
            ib += np.bincount(flat, weights=curv[valid], minlength=self.n_items)
            cross = np.einsum("rlm,rlm->rl", wp, v, dtype=f64) - np.einsum(
                "rlm,rm->rl", wp, s1.astype(np.float32), dtype=f64
            )
            iab += np.bincount(flat, weights=cross[valid], minlength=self.n_items)
        return {**acc, "loglik": loglik, "gb": gb, "ib": ib, "iab": iab}

    def _posterior(self, loglik: np.ndarray) -> None:
        top = loglik.max(1, keepdims=True)
        w = np.exp(loglik - top)
        total = w.sum(1, keepdims=True)
        self.weights = w / total
        # the marginal log-likelihood: each user's likelihood averaged over the prior's draws
        self.log_likelihood = float((top[:, 0] + np.log(total[:, 0] / w.shape[1])).sum())

    def fit_item_effects(
        self, alpha: float = 1.0, prior: float = 2.0, iters: int = 20
    ) -> tuple[float, np.ndarray]:
        """Maximise over ``alpha`` and item effects ``b`` (``c = 0``, ``gamma = 0``; ``b``
        absorbs quality and the no-click utility), with a Gaussian prior of precision
        ``prior`` pulling each ``b`` to their mean: Newton steps on ``(alpha, b)`` whose
        information matrix keeps the ``alpha``-``b`` terms and the diagonal of the ``b``-``b``
        block (solved through the Schur complement), between posterior updates.
        Returns ``(alpha, b)``."""
        # start every b at the level that gives the logged click rate per step
        fit = self.fit_rows
        rate = float(np.clip(self.clicks[fit].any(1).mean(), 1e-4, 1 - 1e-4))
        n_slots = max(float(self.valid[fit].sum(1).mean()), 1.0)
        valid = self.valid[fit]
        mean_v = float(self.offset[fit][valid].mean()) + self.beta_aff * float(self.aff.mean())
        b = np.full(self.n_items, math.log(rate / (1 - rate) / n_slots) - alpha * mean_v)
        zero = np.zeros(self.n_items)
        for _ in range(iters):
            out = self._pass(alpha, zero, b, 0.0)
            self._posterior(out["loglik"])
            g_b = out["gb"] - prior * (b - b.mean())
            d = out["ib"] + prior
            schur = out["iaa"] - float((out["iab"] ** 2 / d).sum())
            step_a = (out["ga"] - float((out["iab"] * g_b / d).sum())) / max(schur, 1e-9)
            step_a = float(np.clip(step_a, -0.5, 0.5))
            step_b = np.clip((g_b - out["iab"] * step_a) / d, -2.0, 2.0)
            alpha, b = alpha + step_a, b + step_b
            if abs(step_a) < 1e-4 and np.abs(step_b).max() < 1e-3:
                break
        return alpha, b

    def fit_scale_offset(
        self, c: np.ndarray, alpha: float, gamma: float, iters: int = 10
    ) -> tuple[float, float]:
        """Maximise over ``(alpha, gamma)`` = ``(1 / tau, u0 / tau)`` with per-item offsets
        ``c`` (``beta_q q_i``) and ``b = 0``: 2-D Newton steps between posterior updates."""
        zero = np.zeros(self.n_items)
        x = np.array([alpha, gamma])
        for _ in range(iters):
            out = self._pass(x[0], c, zero, x[1])
            self._posterior(out["loglik"])
            info = np.array([[out["iaa"], out["iag"]], [out["iag"], out["igg"]]])
            step = np.linalg.solve(info + 1e-9 * np.eye(2), np.array([out["ga"], out["gg"]]))
            x += np.clip(step, -1.0, 1.0)
            if np.abs(step).max() < 1e-4:
                break
        return float(x[0]), float(x[1])

    def expected_affinity(self) -> np.ndarray:
        """``(n, L)`` posterior-mean affinity of each logged slot's item."""
        out = np.empty(self.ids.shape)
        for lo in range(0, self.ids.shape[0], self.CHUNK):
            sl = slice(lo, lo + self.CHUNK)
            w = self.weights[self.user[sl]]  # (R, M)
            out[sl] = np.einsum("rm,mrl->rl", w, self.aff[:, self.ids[sl]])
        return out

    def click_probabilities(
        self, rows: np.ndarray, alpha: float, c: np.ndarray, gamma: float
    ) -> np.ndarray:
        """``(len(rows), L)`` posterior-predictive click probabilities of rows ``rows``."""
        out = np.empty((rows.size, self.ids.shape[1]))
        for lo in range(0, rows.size, self.CHUNK):
            r = rows[lo : lo + self.CHUNK]
            ids, valid = self.ids[r], self.valid[r]
            v = self.beta_aff * self.aff[:, ids] + (self.offset[r] + c[ids])[None]  # (M, R, L)
            z = np.where(valid[None], alpha * v - gamma, -np.inf)
            top = np.maximum(z.max(2, keepdims=True), 0.0)
            ex = np.exp(z - top)
            prob = ex / (ex.sum(2, keepdims=True) + np.exp(-top))
            out[lo : lo + r.size] = np.einsum("rm,mrl->rl", self.weights[self.user[r]], prob)
        return out


# ---------------------------------------------------------- 4-6. the other rules
def _fit_watch(x: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """``logit(w) = alpha0 + alpha1 x + noise * N(0, 1)`` by least squares over clicks."""
    if x.size < 3:
        raise ReplayDataError(
            "the log has fewer than 3 clicks with a watch fraction; calibration needs clicks"
        )
    y = np.log(np.clip(w, 1e-4, 1 - 1e-4) / (1 - np.clip(w, 1e-4, 1 - 1e-4)))
    design = np.stack([np.ones_like(x), x], 1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return float(coef[0]), float(max(coef[1], 0.0)), float(resid.std())


def _logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-6, iters: int = 50) -> np.ndarray:
    """Logistic regression by Newton (IRLS); ``x`` ``(n, p)``, ``y`` ``(n,)`` bool."""
    beta = np.zeros(x.shape[1])
    yf = y.astype(np.float64)
    for _ in range(iters):
        p = _sigmoid(x @ beta)
        grad = x.T @ (yf - p) - ridge * beta
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-9:
            break
    return beta


_HERMITE = np.polynomial.hermite.hermgauss(9)


def _gap_log_likelihood(
    x: np.ndarray,
    s: np.ndarray,
    z: np.ndarray,
    gap: np.ndarray,
    churned: np.ndarray,
    user: np.ndarray,
    p: UserParams,
) -> float:
    """Log-likelihood of the logged session ends at ``x = (log return_mean, churn0)``.

    A user's base gap ``return_mean * exp(return_mean_sd * N(0, 1))`` is shared by all its
    sessions, so the normal is integrated out per user (Gauss-Hermite), not per session:
    treating sessions as independent would over-weight the users who return often (they log
    more sessions) and bias ``return_mean`` down.

    Args:
        x: the parameters. s, z: ``(m,)`` satisfaction and staleness at each session end.
        gap: ``(m,)`` days to the next session (ignored where churned). churned: ``(m,)``.
        user: ``(m,)`` user of each session end, sorted. p: the other parameters.
    """
    nodes, weights = _HERMITE
    spread = float(p.return_mean_sd) * math.sqrt(2.0) * nodes
    base = x[0] - float(p.kappa_sat) * s + float(p.kappa_stale) * z
    mean = np.maximum(np.exp(base[:, None] + spread[None, :]), 1.0 + 1e-9)
    q = 1.0 / mean  # P(gap = 1), (m, nodes)
    g_max = math.floor(float(p.max_gap))
    stay = _sigmoid(-(x[1] - float(p.churn_sat) * s))[:, None]  # 1 - churn draw probability
    g = np.maximum(gap, 1)[:, None]
    log_gap = np.log(np.maximum(stay * q, 1e-300)) + (g - 1) * np.log1p(-np.minimum(q, 1 - 1e-12))
    log_churn = np.log(np.maximum(1 - stay * (1 - (1 - q) ** g_max), 1e-300))
    ll = np.where(churned[:, None], log_churn, log_gap)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(user)) + 1])
    per_user = np.add.reduceat(ll, starts, axis=0) + np.log(weights / math.sqrt(math.pi))
    top = per_user.max(1, keepdims=True)
    return float((top[:, 0] + np.log(np.exp(per_user - top).sum(1))).sum())


def _maximise(
    f: Callable[[np.ndarray], float],
    x0: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    iters: int = 40,
) -> np.ndarray:
    """Damped Newton ascent with finite-difference derivatives inside the box
    ``[low, high]`` (for 2-parameter fits); stops when a step gains less than 1e-8 relative."""
    x = np.clip(x0.astype(np.float64), low, high)
    h = 1e-4
    eye = np.eye(x.size) * h
    fx = f(x)
    for _ in range(iters):
        plus = np.array([f(x + e) for e in eye])
        minus = np.array([f(x - e) for e in eye])
        grad = (plus - minus) / (2 * h)
        hess = np.diag((plus - 2 * fx + minus) / (h * h))
        for i in range(x.size):  # the cross terms
            for j in range(i + 1, x.size):
                a, b = eye[i], eye[j]
                cross = f(x + a + b) - f(x + a - b) - f(x - a + b) + f(x - a - b)
                hess[i, j] = hess[j, i] = cross / (4 * h * h)
        try:
            step = -np.linalg.solve(hess, grad)
            if grad @ step <= 0:  # not an ascent direction: fall back to the gradient
                step = grad / max(np.abs(grad).max(), 1.0)
        except np.linalg.LinAlgError:
            step = grad / max(np.abs(grad).max(), 1.0)
        step = np.clip(x + np.clip(step, -1.0, 1.0), low, high) - x
        for _ in range(30):  # backtracking
            fn = f(x + step)
            if fn >= fx:
                break
            step = step / 2
        else:
            break
        gain = fn - fx
        x, fx = x + step, fn
        if np.abs(step).max() < 1e-7 or gain <= 1e-8 * abs(fx):
            break
    return x


# -------------------------------------------------------------------- the result
@dataclass
class CalibrationResult:
    """What `calibrate` fitted.

    Attributes:
        population: the calibrated `Population` (one segment named ``"calibrated"``).
        catalog: the fitted `Catalog`.
        fitted: name -> value of every fitted user parameter (``tau``, ``u0``, ``alpha0``,
            ``alpha1``, ``watch_noise``, ``h0``, ``h_fatigue``, ``h_sat``, ``return_mean``,
            ``churn0``).
        env_kwargs: ``num_candidates`` and ``slate_size`` of the log, for `simulate` or the env.
        holdout_auc: click-prediction AUC on the held-out sessions (NaN without a holdout).
        log_likelihood: the choice model's log-likelihood per fitted step.
        n_rows, n_users: the log's size.
        settings: the arguments of the fit.
        user_interests: ``(n_users, dim)`` each logged user's posterior-mean interest (users
            numbered as in `LogArrays`).
    """

    population: Population
    catalog: Catalog
    fitted: dict[str, float]
    env_kwargs: dict[str, int]
    holdout_auc: float
    log_likelihood: float
    n_rows: int
    n_users: int
    settings: dict[str, Any] = field(default_factory=dict)
    user_interests: np.ndarray | None = None

    @property
    def params(self) -> UserParams:
        """The calibrated segment's `UserParams`."""
        return self.population.segments[0].params

    def simulate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make `simulate` run the calibrated world:
        ``simulate(**result.simulate_kwargs(), recommenders=..., n_users=..., days=...)``."""
        return {"users": self.population, "catalog": self.catalog, **self.env_kwargs}

    def table(self) -> str:
        """The fitted parameters beside the base preset's values."""
        base = self.settings.get("base_params", {})
        lines = [f"{'parameter':<14}{'fitted':>10}{'base':>10}"]
        for name, value in self.fitted.items():
            lines.append(f"{name:<14}{value:>10.4f}{base.get(name, float('nan')):>10.4f}")
        lines.append(f"{'holdout AUC':<14}{self.holdout_auc:>10.4f}")
        return "\n".join(lines)

    def save(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``population.json``, ``catalog.npz`` and ``calibration.json`` (the fitted values
        and settings) to ``out_dir``, each atomically. Returns name -> path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        info = {
            "fitted": self.fitted,
            "env_kwargs": self.env_kwargs,
            "holdout_auc": _finite_or_none(self.holdout_auc),
            "log_likelihood": self.log_likelihood,
            "n_rows": self.n_rows,
            "n_users": self.n_users,
            "settings": self.settings,
        }
        return {
            "population.json": _atomic_text(out / "population.json", self.population.to_json()),
            "catalog.npz": save_catalog(self.catalog, out / "catalog.npz"),
            "calibration.json": _atomic_text(
                out / "calibration.json", json.dumps(info, indent=2, default=float) + "\n"
            ),
        }


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def write_atomically(path: Path, write: Callable[[Path], Any]) -> Path:
    """Write through a temporary file in the same folder, then ``os.replace``: a failed write
    leaves any existing file untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_text(path: Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_text(text))


_CATALOG_ARRAYS = ("embeddings", "topic", "quality", "popularity", "creator", "length")
_CATALOG_TEXT = ("title", "text", "topic_names")


def save_catalog(catalog: Catalog, path: str | os.PathLike[str]) -> Path:
    """Write a catalog's arrays to an ``.npz`` file (atomically); `load_catalog` reads it."""
    arrays = {name: np.asarray(getattr(catalog, name)) for name in _CATALOG_ARRAYS}
    for name in _CATALOG_TEXT:
        arrays[name] = np.asarray(getattr(catalog, name), dtype=str)
    arrays["meta"] = np.asarray(json.dumps(catalog.meta, default=str))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]

    return write_atomically(Path(path), write)


def load_catalog(path: str | os.PathLike[str]) -> Catalog:
    """Read a catalog written by `save_catalog`.

    Raises:
        ReplayDataError: the file is missing, unreadable or lacks an array (named).
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (*_CATALOG_ARRAYS, *_CATALOG_TEXT) if k not in data]
            if missing:
                raise ReplayDataError(
                    f"{path} lacks the catalog arrays {missing}; write it with save_catalog"
                )
            kw: dict[str, Any] = {k: data[k] for k in _CATALOG_ARRAYS}
            kw.update({k: data[k].astype(object) for k in _CATALOG_TEXT})
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise ReplayDataError(f"cannot read the catalog file {path}: {exc}") from exc
    return Catalog(**kw, meta=meta)


# ---------------------------------------------------------------------- calibrate
def _default_topics(n_items: int) -> int:
    return max(2, min(n_items, round(math.sqrt(n_items / 3))))


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a positive integer")
    return int(value)


def item_lengths(log: LogArrays) -> np.ndarray:
    """``(n_items,)`` each item's median ``watch_time / watch_fraction`` over its clicks (its
    length in the simulator), the median over all clicks for items never clicked."""
    hit = log.clicks.any(1) & (log.watch > 0)
    item = np.maximum(log.slate, 0)[np.arange(log.n), log.clicks.argmax(1)][hit]
    seconds = log.watch_time[hit] / log.watch[hit]
    length = np.full(log.n_items, float(np.median(seconds)) if seconds.size else 60.0)
    if seconds.size:
        order = np.argsort(item, kind="stable")
        uniq, first = np.unique(item[order], return_index=True)
        length[uniq] = [float(np.median(x)) for x in np.split(seconds[order], first[1:])]
    return np.maximum(length, 1e-3)


def _catalog(
    emb: np.ndarray,
    topic: np.ndarray,
    quality: np.ndarray,
    popularity: np.ndarray,
    length: np.ndarray,
    seed: int,
) -> Catalog:
    n, k = emb.shape[0], int(topic.max()) + 1
    return Catalog(
        embeddings=emb.astype(np.float32),
        topic=topic.astype(np.int32),
        quality=np.clip(quality, 0.0, 1.0).astype(np.float32),
        popularity=popularity,
        creator=np.zeros(n, np.int32),
        length=length.astype(np.float32),
        title=np.array([f"item {i}" for i in range(n)], dtype=object),
        text=np.array([f"calibrated item {i} (topic {t})" for i, t in enumerate(topic)], object),
        topic_names=np.array([f"topic {t}" for t in range(k)], dtype=object),
        meta={"source": "calibrated", "seed": seed},
    )


def _state_offset(rep: Replay, p: UserParams, n_slots: int) -> np.ndarray:
    """``(n, L)`` the utility terms other than affinity and quality, from the replayed state;
    the hidden session propensity enters the novelty term at its population mean."""
    nov_sign = 2.0 * float(p.novelty_a) / float(p.novelty_a + p.novelty_b) - 1.0
    return (
        float(p.beta_nov) * nov_sign * rep.novelty
        - float(p.beta_bore) * rep.boredom
        - float(p.beta_rep) * rep.repeat
        - float(p.beta_sim) * rep.slate_sim
        - float(p.beta_pos) * np.log1p(np.arange(n_slots))[None, :]
    )


def _fit_leave(log: LogArrays, rep: Replay, p: UserParams, rows: np.ndarray) -> list[float]:
    """``[h0, h_fatigue, h_sat]``: the discrete-time hazard of leaving after each step."""
    design = np.stack(
        [
            np.ones(int(rows.sum())),
            (log.step[rows] + 1) / float(p.fatigue_scale),
            -rep.satisfaction[rows],
        ],
        1,
    )
    return [float(x) for x in _logistic(design, log.left[rows])]


def _fit_returns(log: LogArrays, rep: Replay, p: UserParams, rows: np.ndarray) -> list[float]:
    """``[return_mean, churn0]`` by maximum likelihood of the logged session ends."""
    ends = log.left & rows & (log.churned | (log.return_days >= 1))
    if not ends.any():
        raise ReplayDataError(
            "the log has no session ends with a return gap or churn ('left', 'return_days', "
            "'churned'); calibration needs multi-session logs"
        )
    s, z = rep.satisfaction[ends], rep.staleness[ends]
    gap, churned, user = log.return_days[ends], log.churned[ends], log.user[ends]
    x = _maximise(
        lambda x: _gap_log_likelihood(x, s, z, gap, churned, user, p),
        np.array([math.log(float(p.return_mean)), float(p.churn0)]),
        low=np.array([math.log(1.0 + 1e-6), -30.0]),  # return_mean > 1 day; churn draws >= 0
        high=np.array([math.log(1e3), 10.0]),
    )
    return [float(math.exp(x[0])), float(x[1])]


def calibrate(
    log: Any,
    n_items: int | None = None,
    dim: int = 16,
    *,
    n_topics: int | None = None,
    base: ParametricUser | None = None,
    holdout: float = 0.2,
    n_prior_draws: int = 64,
    max_choice_rows: int | None = 300_000,
    history: int = 10,
    recommender: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> CalibrationResult:
    """Fit a parametric population and a catalog to a log (see the module docstring).

    Args:
        log: a path, a DataFrame in the log schema, a `Sessions` or `LogArrays`.
        n_items: the catalog size (default: the largest logged item id + 1).
        dim: embedding dimension of the fitted catalog.
        n_topics: topics of the fitted catalog (default ``round(sqrt(n_items / 3))``).
        base: the preset whose other parameters the calibrated users keep (default
            `engagement`).
        holdout: share of sessions held out of the fit to measure click-prediction AUC, in
            [0, 0.9]; 0 fits on everything (the AUC is then NaN).
        n_prior_draws: M, the draws of the interest prior the mixed logit integrates over
            (cost grows linearly in M).
        max_choice_rows: the choice model (step 3) and the watch fit (step 4) use the rows of
            randomly chosen whole users up to this many rows (their cost is ``rows x L x M``
            per EM pass); None uses every fitted row. Users left out keep the prior as their
            interest.
        history: the click history length H the log's simulator used (the env's default 10).
        recommender: calibrate on this recommender's rows only.
        seed: seed of the holdout split, the SVD, k-means and the prior's draws.
        progress: ``progress(done, total, label)`` after each stage.

    Returns:
        A `CalibrationResult`.
    """
    from recoworld.users.presets import engagement

    dim = _check_positive_int("dim", dim)
    history = _check_positive_int("history", history)
    n_prior_draws = _check_positive_int("n_prior_draws", n_prior_draws)
    if not 0.0 <= holdout <= 0.9:
        raise ConfigError(f"holdout={holdout} must lie in [0, 0.9] (a share of sessions)")
    base = base if base is not None else engagement()
    if not isinstance(base, ParametricUser):
        raise ConfigError(
            f"base={base!r} must be a ParametricUser, e.g. recoworld.users.engagement()"
        )
    p = base.params
    if isinstance(log, LogArrays):
        arr = log
    else:
        arr = LogArrays.from_log(log, n_items=n_items, recommender=recommender)
    if n_topics is None:
        n_topics = _default_topics(arr.n_items)
    n_topics = _check_positive_int("n_topics", n_topics)
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, 5, label)

    session_id = np.cumsum(arr.first) - 1
    held = np.random.default_rng(seed).random(int(session_id[-1]) + 1) < holdout
    fit = ~held[session_id]
    if not fit.any():
        raise ReplayDataError(f"holdout={holdout} left no session to fit on; lower it")
    choice = fit
    if max_choice_rows is not None and int(fit.sum()) > max_choice_rows:
        per_user = np.bincount(arr.user[fit], minlength=arr.n_users)
        order = np.random.default_rng(seed + 1).permutation(arr.n_users)
        keep = np.zeros(arr.n_users, bool)
        keep[order[np.cumsum(per_user[order]) <= max_choice_rows]] = True
        choice = fit & keep[arr.user]

    # 1-2. embeddings and topics; the user state replayed over them; popularity and length
    emb = factorise_clicks(arr, dim, rows=fit, seed=seed)
    topic = spherical_kmeans(emb, n_topics, seed=seed)
    length = item_lengths(arr)
    uniform = np.full(arr.n_items, 1.0 / arr.n_items)
    rep = replay_state(arr, _catalog(emb, topic, uniform, uniform, length, seed), p, history)
    popularity = invert_popularity(
        arr.candidate_counts, topic, rep.topic_draws, rep.cold, arr.n_candidates
    )
    catalog = _catalog(emb, topic, np.full(arr.n_items, 0.5), popularity, length, seed)
    tick("factorised the clicks")

    # 3. choice: a mixed logit over the base prior's interests; item effects, then (tau, u0)
    draw_ids = np.arange(n_prior_draws)
    prior = Population((base,)).sample_keys(
        streams.user_keys(seed + 7919, draw_ids), draw_ids, catalog, history
    )
    prior_theta = prior.theta.astype(np.float64)
    ids, valid = np.maximum(arr.slate, 0), arr.valid
    offset = _state_offset(rep, p, arr.slate.shape[1])
    ml = MixedLogit(
        prior_theta @ emb.T,
        ids,
        valid,
        arr.clicks,
        arr.user,
        arr.n_users,
        offset,
        float(p.beta_aff),
        choice,
    )
    alpha, b = ml.fit_item_effects()
    if not alpha > 0:
        raise ReplayDataError(
            f"the choice fit found a non-positive utility scale (1/tau = {alpha:.3g}): clicks "
            "in this log do not follow the fitted interests; calibrate on a longer log"
        )
    # b = (beta_q q - u0) / tau: place u0 so the shown items' mean quality is 0.5
    shown = np.bincount(ids[valid], minlength=arr.n_items).astype(np.float64)
    u0 = float(p.beta_q) * 0.5 - float((shown * b).sum() / max(shown.sum(), 1.0)) / alpha
    quality = np.clip((b / alpha + u0) / float(p.beta_q), 0.0, 1.0)
    catalog = _catalog(emb, topic, quality, popularity, length, seed)
    c_item = float(p.beta_q) * quality
    alpha, gamma = ml.fit_scale_offset(c_item, alpha, u0 * alpha)
    tau, u0 = 1.0 / alpha, gamma / alpha
    auc = float("nan")
    if (~fit).any():
        rows = np.flatnonzero(~fit)
        prob = ml.click_probabilities(rows, alpha, c_item, gamma)
        auc = click_auc(prob[valid[rows]], arr.clicks[rows][valid[rows]])
    tick("fitted the choice model")

    # 4-5. watch fraction (on the posterior-mean utility of the clicked item) and leaving
    utility = float(p.beta_aff) * ml.expected_affinity() + offset + c_item[ids]
    hit = arr.clicks.any(1) & (arr.watch > 0) & choice
    slot = arr.clicks.argmax(1)
    alpha0, alpha1, noise = _fit_watch(utility[hit, slot[hit]] - u0, arr.watch[hit])
    h0, h_fatigue, h_sat = _fit_leave(arr, rep, p, fit)
    tick("fitted watching and leaving")

    # 6. return gaps and churn
    return_mean, churn0 = _fit_returns(arr, rep, p, fit)
    tick("fitted returns")

    fitted = {
        "tau": tau,
        "u0": u0,
        "alpha0": alpha0,
        "alpha1": alpha1,
        "watch_noise": noise,
        "h0": h0,
        "h_fatigue": h_fatigue,
        "h_sat": h_sat,
        "return_mean": return_mean,
        "churn0": churn0,
    }
    try:
        params = p.replace(**fitted)
    except ConfigError as exc:
        raise ReplayDataError(f"the log gave parameters outside the model's range: {exc}") from exc
    theta = ml.weights @ prior_theta
    theta /= np.maximum(np.linalg.norm(theta, axis=1, keepdims=True), 1e-12)
    result = CalibrationResult(
        population=Population((ParametricUser(params, name="calibrated"),)),
        catalog=catalog,
        fitted=fitted,
        env_kwargs={"num_candidates": arr.n_candidates, "slate_size": int(arr.slate.shape[1])},
        holdout_auc=auc,
        log_likelihood=ml.log_likelihood / max(int(choice.sum()), 1),
        n_rows=arr.n,
        n_users=arr.n_users,
        settings={
            "dim": dim,
            "n_topics": int(topic.max()) + 1,
            "holdout": holdout,
            "n_prior_draws": n_prior_draws,
            "choice_rows": int(choice.sum()),
            "history": history,
            "seed": seed,
            "base": base.name,
            "base_params": {k: float(getattr(p, k)) for k in fitted},
        },
        user_interests=theta,
    )
    tick("done")
    return result


# ------------------------------------------------------------------------ fidelity
def click_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (Mann-Whitney, with
    average ranks for ties); NaN when a class is empty."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size)
    bounds = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [s.size]])
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``max |F_a - F_b|`` (NaN if a sample is empty)."""
    a = np.sort(np.asarray(a, np.float64).ravel())
    b = np.sort(np.asarray(b, np.float64).ravel())
    if a.size == 0 or b.size == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.abs(fa - fb).max())


def session_statistics(log: Any) -> dict[str, Any]:
    """Per-session distributions and the summary rates of a log.

    Returns:
        ``session_ctr`` ``(sessions,)`` clicks per shown item; ``session_length``
        ``(sessions,)`` steps; ``return_gap`` ``(returns,)`` days to the next session;
        and the floats ``ctr`` (clicks per shown item), ``mean_session_length`` and
        ``next_day_return`` (share of sessions followed by one the next day), defined as
        `recoworld.simulation.SUMMARY_METRICS` defines them.
    """
    arr = log if isinstance(log, LogArrays) else LogArrays.from_log(log)
    sid = np.cumsum(arr.first) - 1
    n_sessions = int(sid[-1]) + 1
    shown = np.bincount(sid, weights=arr.valid.sum(1), minlength=n_sessions)
    clicks = np.bincount(sid, weights=arr.clicks.sum(1), minlength=n_sessions)
    length = np.bincount(sid, minlength=n_sessions).astype(np.float64)
    gaps = arr.return_days[arr.left & (arr.return_days >= 1)].astype(np.float64)
    return {
        "session_ctr": clicks / np.maximum(shown, 1),
        "session_length": length,
        "return_gap": gaps,
        "ctr": float(clicks.sum() / max(shown.sum(), 1)),
        "mean_session_length": float(length.mean()),
        "next_day_return": float((arr.return_days == 1).sum() / n_sessions),
    }


@dataclass(frozen=True)
class FidelityReport:
    """Logged vs simulated behaviour.

    Attributes:
        rows: metric -> (logged, simulated, relative difference, KS statistic or NaN).
        holdout_auc: click-prediction AUC on held-out sessions (NaN when unknown).
        logged, simulated: `session_statistics` of each log (for plots).
    """

    rows: dict[str, tuple[float, float, float, float]]
    holdout_auc: float
    logged: dict[str, Any]
    simulated: dict[str, Any]

    def table(self) -> str:
        """The report as an aligned text table."""
        head = f"{'metric':<22}{'logged':>10}{'simulated':>11}{'rel. diff':>11}{'KS':>8}"
        lines = [head, "-" * len(head)]
        for name, (lv, sv, rel, ks) in self.rows.items():
            ks_s = f"{ks:>8.3f}" if math.isfinite(ks) else f"{'':>8}"
            lines.append(f"{name:<22}{lv:>10.4f}{sv:>11.4f}{rel:>+11.1%}{ks_s}")
        auc = f"{self.holdout_auc:.4f}" if math.isfinite(self.holdout_auc) else "n/a"
        lines.append(f"held-out click AUC: {auc}")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Write a PNG with the three distributions (logged vs simulated), atomically."""
        figure: Any = require("matplotlib.figure", "plot")
        fig = figure.Figure(figsize=(12, 3.8), layout="constrained")
        axes = fig.subplots(1, 3)
        panels = (
            ("session_ctr", "CTR per session", 30),
            ("session_length", "session length (steps)", None),
            ("return_gap", "return gap (days)", None),
        )
        for ax, (key, title, bins) in zip(axes, panels, strict=True):
            a, b = self.logged[key], self.simulated[key]
            both = np.concatenate([a, b]) if a.size + b.size else np.zeros(1)
            if bins is None:  # integer data: one bin per value (or per few values)
                step = max(1, int(np.ceil(float(both.max(initial=1.0)) / 40)))
                edges = np.arange(0.5, max(float(both.max()), 1.0) + step + 0.5, step)
            else:
                edges = np.linspace(float(both.min()), float(both.max()) + 1e-9, bins + 1)
            ax.hist(a, bins=edges, density=True, alpha=0.5, label="logged")
            ax.hist(b, bins=edges, density=True, alpha=0.5, label="simulated")
            ks = self.rows.get(_KS_ROW[key], (0, 0, 0, float("nan")))[3]
            ax.set(title=f"{title}  KS={ks:.3f}", xlabel=title, ylabel="density")
            ax.legend()
        path = Path(path)
        return write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


_KS_ROW = {
    "session_ctr": "CTR",
    "session_length": "mean session length",
    "return_gap": "mean return gap",
}


def fidelity_report(
    original_log: Any,
    simulated_log: Any,
    *,
    calibration: CalibrationResult | None = None,
) -> FidelityReport:
    """Compare a logged and a simulated log (see the module docstring).

    Args:
        original_log, simulated_log: paths, DataFrames, `Sessions` or `LogArrays`.
        calibration: the fit whose held-out click AUC the report shows (its ``holdout``
            sessions were left out of the fit).

    Returns:
        A `FidelityReport`; ``table()`` and ``plot(path)`` render it.
    """
    lo, si = session_statistics(original_log), session_statistics(simulated_log)

    def rel(a: float, b: float) -> float:
        return (b - a) / a if a else float("nan")

    def mean(x: np.ndarray) -> float:
        return float(np.mean(x)) if x.size else float("nan")

    rows: dict[str, tuple[float, float, float, float]] = {}
    for name, key, dist in (
        ("CTR", "ctr", "session_ctr"),
        ("mean session length", "mean_session_length", "session_length"),
        ("next-day return", "next_day_return", ""),
        ("mean return gap", "", "return_gap"),
    ):
        a = float(lo[key]) if key else mean(lo[dist])
        b = float(si[key]) if key else mean(si[dist])
        ks = ks_statistic(lo[dist], si[dist]) if dist else float("nan")
        rows[name] = (a, b, rel(a, b), ks)
    auc = calibration.holdout_auc if calibration is not None else float("nan")
    return FidelityReport(rows, auc, lo, si)
