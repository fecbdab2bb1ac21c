"""`ParametricUser`: the vectorised user of USER_MODEL.md (sample, respond, transition).

Every rule is written once, batched over users; parameters may be scalars (one segment) or
per-user arrays (a sampled population), so a mixture of segments steps in one batch.
"""

from __future__ import annotations

import numpy as np

from recoworld import rng
from recoworld.catalog import Catalog
from recoworld.types import Feedback
from recoworld.users import instructions as ins
from recoworld.users.params import UserParams
from recoworld.users.state import UserState

# Columns of the per-step draws (purpose rng.STEP, counter = (session, step)).
D_CHOICE, D_WATCH1, D_WATCH2, D_LIKE, D_LEAVE, D_GAP, D_CHURN = range(7)
N_STEP_DRAWS = 7
OBS_DECAY = 0.8  # decay of the observable click/skip rates and topic mixes (fixed, not hidden)
ENJOYED = 0.6  # watch fraction above which an item counts as enjoyed


def _col(x: np.ndarray | float) -> np.ndarray | float:
    """A per-user ``(n,)`` parameter as a column ``(n, 1)``; scalars unchanged."""
    return x[:, None] if isinstance(x, np.ndarray) else x


def satisfaction_update(
    s: np.ndarray, watch: np.ndarray, lam: np.ndarray | float, expectation: np.ndarray | float
) -> np.ndarray:
    """``S <- (1 - lam) S + lam (w * clicked - E_u)``; ``watch`` is 0 without a click."""
    return ((1.0 - lam) * s + lam * (watch - expectation)).astype(np.float32)


class ParametricUser:
    """A user model from a few legible rules; presets are parameter sets of this class.

    Args:
        params: the segment's `UserParams` (scalars; per-user values are drawn by `sample`).
        name: a label for tables and logs.
    """

    def __init__(self, params: UserParams | None = None, *, name: str = "custom") -> None:
        self.params = params if params is not None else UserParams()
        self.name = name

    def __repr__(self) -> str:
        return f"ParametricUser(name={self.name!r})"

    # ------------------------------------------------------------------ sample
    def sample_into(self, state: UserState, rows: np.ndarray, catalog: Catalog) -> None:
        """Draw hidden traits for users ``rows`` of ``state`` from their own streams.

        Uses ``state.key[rows]``; writes theta, theta0, novelty, and the per-user
        ``expectation`` and ``return_mean`` parameters. Interest topics are drawn in proportion
        to topic sizes, 1 .. ``n_interests`` of them, mixed with random weights and scattered by
        ``interest_noise``.
        """
        p = self.params
        keys = state.key[rows]
        n, d, t = rows.size, catalog.dim, catalog.n_topics
        u = rng.uniforms(keys, 0, rng.SAMPLE, 60 + 2 * d)
        share = np.bincount(catalog.topic, minlength=t) / catalog.n_items
        cdf = np.cumsum(share)
        topics = np.minimum(np.searchsorted(cdf, u[:, 0:3] * cdf[-1], side="right"), t - 1)
        k = 1 + np.floor(u[:, 3] * p.n_interests).astype(np.int64)  # 1 .. n_interests
        w = (0.2 + u[:, 4:7]) * (np.arange(3)[None, :] < k[:, None])
        centre = np.einsum("nk,nkd->nd", w, catalog.topic_centroids[topics])
        noise = rng.normals(u[:, 60 : 60 + d], u[:, 60 + d : 60 + 2 * d])
        theta = centre / np.linalg.norm(centre, axis=1, keepdims=True)
        theta = theta + p.interest_noise * noise / np.sqrt(d)
        theta /= np.linalg.norm(theta, axis=1, keepdims=True)
        state.theta[rows] = theta
        state.theta0[rows] = theta
        nu = rng.beta(np.full(n, p.novelty_a), np.full(n, p.novelty_b), u[:, 8:58])
        state.novelty[rows] = np.clip(nu, 0.02, 0.98)
        z = rng.normals(u[:, 58], u[:, 59])
        state.params.expectation[rows] = p.expectation + p.expectation_sd * z
        z2 = rng.normals(u[:, 59], u[:, 58])
        state.params.return_mean[rows] = p.return_mean * np.exp(p.return_mean_sd * z2)

    # ----------------------------------------------------------------- utility
    def item_utility(self, state: UserState, items: np.ndarray, catalog: Catalog) -> np.ndarray:
        """Hidden utility of each item shown alone at the top slot (no position bias, no slate
        similarity): what the oracle recommender ranks by. Never observed by recommenders.

        Args:
            state: n users; items: ``(n, m)`` item ids (>= 0).

        Returns:
            ``(n, m)`` float utilities, on the scale of ``u0`` (the no-click utility).
        """
        emb = np.take(catalog.embeddings, items, axis=0)
        aff = np.einsum("nld,nd->nl", emb, state.theta)
        return self._item_utility(state, items, emb, catalog.topic[items], aff, catalog)

    def _item_utility(
        self,
        state: UserState,
        ids: np.ndarray,
        emb: np.ndarray,
        topics: np.ndarray,
        aff: np.ndarray,
        catalog: Catalog,
    ) -> np.ndarray:
        """Affinity, quality, novelty, boredom and repetition terms of USER_MODEL.md."""
        p = state.params
        n = ids.shape[0]
        hist = state.history
        hvalid = hist >= 0
        hemb = np.take(catalog.embeddings, np.where(hvalid, hist, 0), axis=0)  # (n, H, d)
        sim_h = np.where(hvalid[:, None, :], np.matmul(emb, hemb.transpose(0, 2, 1)), -2.0)
        has_hist = np.asarray(hvalid.any(1))
        novelty = np.where(has_hist[:, None], 1.0 - sim_h.max(2), 1.0)
        bore = state.exposure[np.arange(n)[:, None], topics]
        repeat = (ids[:, :, None] == hist[:, None, :]).any(2)
        return (
            _col(p.beta_aff) * aff
            + _col(p.beta_q) * catalog.quality[ids]
            + _col(p.beta_nov * (2.0 * state.propensity - 1.0)) * novelty
            - _col(p.beta_bore) * bore
            - _col(p.beta_rep) * repeat
        )

    # ----------------------------------------------------------------- respond
    def respond(
        self, state: UserState, slate: np.ndarray, catalog: Catalog, u: np.ndarray
    ) -> Feedback:
        """Feedback of every user to its slate. Pure: reads ``state``, writes nothing.

        Args:
            state: n users.
            slate: ``(n, L)`` int item ids, -1 for an empty slot (a repeat shown once).
            catalog: the items.
            u: ``(n, N_STEP_DRAWS)`` uniforms from each user's step stream.

        Returns:
            `Feedback` with per-slot clicks (at most one), watch, likes; per-user leave,
            ignored and the instruction emitted (if any). ``extras`` holds ``utility`` of the
            clicked item (hidden; for the oracle and diagnostics, never observed).
        """
        p = state.params
        n, n_slots = slate.shape
        valid = slate >= 0
        ids = np.where(valid, slate, 0)
        emb = np.take(catalog.embeddings, ids, axis=0)  # (n, L, d)
        topics = catalog.topic[ids]
        aff = np.einsum("nld,nd->nl", emb, state.theta)
        m = valid.sum(1)
        total = np.einsum("nld,nl->nd", emb, valid.astype(np.float32))
        pair = np.einsum("nld,nd->nl", emb, total) - 1.0
        mean_sim = np.where(m[:, None] > 1, pair / np.maximum(m - 1, 1)[:, None], 0.0)
        utility = (
            self._item_utility(state, ids, emb, topics, aff, catalog)
            - _col(p.beta_sim) * mean_sim
            - _col(p.beta_pos) * np.log1p(np.arange(n_slots))[None, :]
        )
        # multinomial logit over the valid slots plus "no click"
        tau = _col(p.tau)
        logits = np.where(valid, utility / tau, -np.inf)
        z0 = np.zeros((n, 1)) + _col(p.u0 / p.tau)
        top = np.maximum(logits.max(1, keepdims=True), z0)
        ex = np.exp(logits - top)
        e0 = np.exp(z0 - top)
        bounds = np.cumsum(np.concatenate([e0, ex], 1), 1)
        bounds /= bounds[:, -1:]
        c = np.minimum((bounds <= u[:, D_CHOICE : D_CHOICE + 1]).sum(1), n_slots)
        clicked = c > 0
        slot = np.maximum(c - 1, 0)
        clicks = np.zeros((n, n_slots), dtype=bool)
        clicks[np.arange(n), slot] = clicked
        u_click = utility[np.arange(n), slot]
        eps = rng.normals(u[:, D_WATCH1], u[:, D_WATCH2])
        w = ins.sigmoid(p.alpha0 + p.alpha1 * (u_click - p.u0) + p.watch_noise * eps)
        w = np.where(clicked, w, 0.0).astype(np.float32)
        like = clicked & (u[:, D_LIKE] < ins.sigmoid(p.gamma0 + p.gamma1 * u_click))
        item_len = catalog.length[ids[np.arange(n), slot]]
        ignored = ins.ignored_instruction(
            state.instr_kind,
            state.instr_topic,
            state.instr_item,
            ids,
            topics,
            valid,
            state.familiar,
        )
        s_new = satisfaction_update(state.satisfaction, w, p.lam, p.expectation)
        hazard = ins.sigmoid(
            p.h0
            + p.h_fatigue * (state.step + 1) / p.fatigue_scale
            - p.h_sat * s_new
            + p.h_ignored * ignored
        )
        leave = u[:, D_LEAVE] < hazard
        # instructions: boredom and low satisfaction make a staying user speak up
        urge = ins.sigmoid(p.i0 - p.i_sat * s_new + p.i_bore * state.exposure.max(1))
        speak = (state.instr_kind == 0) & ~leave & (urge > p.instruct_threshold)
        kind = np.zeros(n, np.int8)
        itopic = np.full(n, -1, np.int32)
        iitem = np.full(n, -1, np.int32)
        if speak.any():
            rows = np.flatnonzero(speak)
            mean_aff = np.where(valid, aff, 0.0).sum(1) / np.maximum(m, 1)
            kind[rows], itopic[rows], iitem[rows] = ins.choose_instruction(
                rows,
                state.exposure,
                state.propensity,
                state.theta,
                mean_aff,
                state.last_enjoyed,
                np.broadcast_to(p.bore_level, (n,)),
                np.broadcast_to(p.low_affinity, (n,)),
                catalog,
            )
        return Feedback(
            clicks=clicks,
            watch_fraction=np.where(clicks, w[:, None], 0.0).astype(np.float32),
            watch_time=np.where(clicks, (w * item_len)[:, None], 0.0).astype(np.float32),
            likes=clicks & like[:, None],
            leave=leave,
            ignored=ignored,
            instruction_kind=kind,
            instruction_topic=itopic,
            instruction_item=iitem,
            extras={"utility": np.where(clicked, u_click, np.nan).astype(np.float32)},
        )

    # -------------------------------------------------------------- transition
    def transition(
        self, state: UserState, slate: np.ndarray, feedback: Feedback, catalog: Catalog
    ) -> None:
        """Update every user's state after its feedback, in place (drift, exposure,
        satisfaction, fatigue, history, instruction). Session ends are handled by
        `recoworld.users.sessions.end_sessions`."""
        p = state.params
        n = state.n
        valid = slate >= 0
        ids = np.where(valid, slate, 0)
        clicked = feedback.clicks.any(1)
        slot = feedback.clicks.argmax(1)
        item = np.where(clicked, ids[np.arange(n), slot], -1).astype(np.int32)
        item0 = np.maximum(item, 0)
        w = feedback.watch_fraction.max(1)
        n_topics = catalog.n_topics
        flat = (catalog.topic[ids] + (np.arange(n) * n_topics)[:, None])[valid]
        share = np.bincount(flat, minlength=n * n_topics).reshape(n, n_topics)
        share = share / np.maximum(valid.sum(1), 1)[:, None]
        ctopic = catalog.topic[item0]
        onehot = (ctopic[:, None] == np.arange(n_topics)) & np.asarray(clicked)[:, None]
        # interest drift on a click, anchored to the interest the user was born with
        e = catalog.embeddings[item0]
        drift = (
            state.theta
            + _col(p.eta) * (e - state.theta)
            + _col(p.eta0) * (state.theta0 - state.theta)
        )
        drift /= np.linalg.norm(drift, axis=1, keepdims=True)
        state.theta[clicked] = drift[clicked]
        # exposure counts consumption more than mere display
        rho, a = _col(p.rho), _col(p.alpha_exp)
        state.exposure[:] = rho * state.exposure + (1 - rho) * (a * onehot + (1 - a) * share)
        state.satisfaction[:] = satisfaction_update(state.satisfaction, w, p.lam, p.expectation)
        state.step += 1
        # observable history
        novel = clicked & ~state.familiar[np.arange(n), ctopic]
        state.novel_clicks += novel
        state.familiar_clicks += clicked & ~novel
        state.life_novel += novel
        state.life_familiar += clicked & ~novel
        state.familiar |= onehot
        shifted = np.concatenate([item[:, None], state.history[:, :-1]], 1)
        state.history[:] = np.where(np.asarray(clicked)[:, None], shifted, state.history)
        state.last_enjoyed[:] = np.where(clicked & (w > ENJOYED), item, state.last_enjoyed)
        state.session_mix += onehot
        state.click_mix *= OBS_DECAY
        state.click_mix += (1 - OBS_DECAY) * onehot
        state.seen_mix *= OBS_DECAY
        state.seen_mix += (1 - OBS_DECAY) * share
        state.recent_clicks[:] = OBS_DECAY * state.recent_clicks + (1 - OBS_DECAY) * clicked
        state.recent_skips[:] = OBS_DECAY * state.recent_skips + (1 - OBS_DECAY) * ~clicked
        # the active instruction ages and expires; a new one replaces none
        active = state.instr_kind != 0
        state.instr_age += active
        expired = active & (state.instr_age >= p.instruct_steps)
        state.instr_kind[expired] = 0
        state.instr_topic[expired] = -1
        state.instr_item[expired] = -1
        new = feedback.instruction_kind != 0
        state.instr_kind[new] = feedback.instruction_kind[new]
        state.instr_topic[new] = feedback.instruction_topic[new]
        state.instr_item[new] = feedback.instruction_item[new]
        state.instr_age[new] = 0
