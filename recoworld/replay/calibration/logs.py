"""The log as arrays (`LogArrays`), click-profile factorisation and spherical k-means."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recoworld.errors import ReplayDataError

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
