"""Session boundaries: the gap until the user returns, churn, and a new session's start."""

from __future__ import annotations

import numpy as np

from recoworld import rng
from recoworld.users.instructions import sigmoid
from recoworld.users.parametric import D_CHURN, D_GAP
from recoworld.users.state import UserState

N_SESSION_DRAWS = 50  # uniforms for the Beta draw of the session propensity


def staleness(session_mix: np.ndarray, past_mix: np.ndarray) -> np.ndarray:
    """Cosine between this session's clicked-topic mix and earlier sessions' (0 if either is
    empty): "the same thing every day". Shapes ``(n, n_topics)`` -> ``(n,)``."""
    num = (session_mix * past_mix).sum(1)
    den = np.linalg.norm(session_mix, axis=1) * np.linalg.norm(past_mix, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)


def end_sessions(
    state: UserState, rows: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """End the sessions of users ``rows``: draw the gap and churn, in place.

    The gap is ``1 + Geometric`` with mean ``return_mean * exp(-kappa_sat S + kappa_stale z)``;
    a gap above ``max_gap`` days, or a draw under ``sigmoid(churn0 - churn_sat S)``, churns.
    Exposure recovers over the gap; earlier sessions' topic mix absorbs this session's.

    Args:
        state: all users; rows: ``(m,)`` indices of the users whose session ends.
        u: ``(m, N_STEP_DRAWS)`` the same step draws those users' responses used.

    Returns:
        ``gap`` ``(m,)`` int64 days until the next session, and ``churned`` ``(m,)`` bool.
    """
    p = state.params.take_rows(rows) if isinstance(state.params.h0, np.ndarray) else state.params
    s = state.satisfaction[rows].astype(np.float64)
    z = staleness(state.session_mix[rows], state.past_mix[rows])
    mean = p.return_mean * np.exp(-p.kappa_sat * s + p.kappa_stale * z)
    gap = rng.geometric_gap(mean, u[:, D_GAP])
    churned = (gap > p.max_gap) | (u[:, D_CHURN] < sigmoid(p.churn0 - p.churn_sat * s))
    mix = state.session_mix[rows]
    norm = np.linalg.norm(mix, axis=1, keepdims=True)
    state.past_mix[rows] = 0.5 * state.past_mix[rows] + 0.5 * mix / np.maximum(norm, 1e-12)
    recovery = np.exp(-gap / np.asarray(p.exposure_recovery_days))[:, None]
    state.exposure[rows] *= recovery.astype(np.float32)
    state.churned[rows] |= churned
    return gap, churned


def start_sessions(state: UserState, rows: np.ndarray, gap: np.ndarray | int = 0) -> None:
    """Start the next session of users ``rows`` (``gap`` days later), in place.

    Resets step, satisfaction, the session's counts and the instruction, and draws the
    session's novelty propensity ``Beta(kappa nu, kappa (1 - nu))`` (``kappa = inf``: the
    trait itself) from the user's session stream.
    """
    if rows.size == 0:
        return
    p = state.params
    state.day[rows] += np.asarray(gap, dtype=np.int32)
    state.step[rows] = 0
    state.satisfaction[rows] = 0.0
    state.session_mix[rows] = 0.0
    state.novel_clicks[rows] = 0
    state.familiar_clicks[rows] = 0
    state.instr_kind[rows] = 0
    state.instr_topic[rows] = -1
    state.instr_item[rows] = -1
    state.instr_age[rows] = 0
    nu = state.novelty[rows].astype(np.float64)
    kappa = np.broadcast_to(np.asarray(p.kappa, dtype=np.float64), state.key.shape)[rows]
    u = rng.uniforms(state.key[rows], state.session[rows], rng.SESSION, N_SESSION_DRAWS)
    finite = np.isfinite(kappa)
    k = np.where(finite, kappa, 1.0)
    draw = rng.beta(k * nu, k * (1.0 - nu), u)
    state.propensity[rows] = np.where(finite, np.clip(draw, 1e-3, 1 - 1e-3), nu)


def begin_next(state: UserState, rows: np.ndarray, gap: np.ndarray) -> None:
    """Advance users ``rows`` (not churned) to their next session ``gap`` days later."""
    state.session[rows] += 1
    start_sessions(state, rows, gap)
