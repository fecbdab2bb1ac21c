"""Likelihoods fitted by `calibrate`: the mixed logit over slates, watch fractions, gaps."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from recoworld.errors import ReplayDataError
from recoworld.replay.calibration.logs import _sigmoid
from recoworld.users.params import UserParams

Progress = Callable[[int, int, str], None]


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
