"""Observations: only what a real system could see, as a `Dict` of bounded float32 `Box`es.

- ``candidates`` ``(K, dim + 5)``: [embedding, quality, log-popularity, length] from one gather
  of the catalog's item table, then [topic new to the user, user's recent exposure to the
  topic] computed in O(1) per candidate from the user's click and display history.
- ``user`` ``(9 + n_topics + dim,)``: step in session, day / horizon, session index, recent
  click and skip rates, novel and familiar clicks this session and in the lifetime (each count
  ``c`` squashed to ``c / (c + 5)``), the decaying clicked-topic mix, and the mean embedding of
  the recent clicks.
- ``instruction`` ``(4 + 2 dim + 1,)``: kind one-hot, the topic's centroid, the item's
  embedding, and the age ``a / (a + 5)``; zeros when no instruction is active.

Nothing here depends on the hidden interest, novelty trait or propensity, satisfaction or
exposure of a user.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from recoworld.catalog import Catalog
from recoworld.types import N_INSTRUCTION_KINDS
from recoworld.users.state import UserState

N_USER_SCALARS = 9
SQUASH = 5.0


def _squash(c: np.ndarray) -> np.ndarray:
    return c / (c + SQUASH)


def _box(low: np.ndarray) -> spaces.Box:
    return spaces.Box(low, np.ones_like(low), dtype=np.float32)


class ObservationBuilder:
    """Builds batched observations ``(n, ...)`` from user state and candidates."""

    def __init__(self, catalog: Catalog, k: int, horizon_days: int) -> None:
        self.catalog = catalog
        self.k = k
        self.horizon = max(horizon_days, 1)
        d, t = catalog.dim, catalog.n_topics
        feats = catalog.item_features
        self.table = np.concatenate([feats, np.zeros((catalog.n_items, 2), np.float32)], 1)
        self.n_item_cols = feats.shape[1]
        self.cand_dim = self.table.shape[1]
        self.user_dim = N_USER_SCALARS + t + d
        self.instr_dim = N_INSTRUCTION_KINDS + 2 * d + 1
        self.centroids = np.concatenate([np.zeros((1, d), np.float32), catalog.topic_centroids])
        self.embed = np.concatenate([np.zeros((1, d), np.float32), catalog.embeddings])

    def space(self) -> spaces.Dict:
        """The single-user observation space."""
        d = self.catalog.dim
        return spaces.Dict(
            {
                "candidates": _box(np.tile(self._low(self.cand_dim, 0, d), (self.k, 1))),
                "user": _box(self._low(self.user_dim, self.user_dim - d, self.user_dim)),
                "instruction": _box(
                    self._low(self.instr_dim, N_INSTRUCTION_KINDS, N_INSTRUCTION_KINDS + 2 * d)
                ),
            }
        )

    def _low(self, size: int, lo: int, hi: int) -> np.ndarray:
        low = np.zeros(size, np.float32)
        low[lo:hi] = -1.0
        return low

    def allocate(self, n: int) -> dict[str, np.ndarray]:
        """Uninitialised observation arrays for n users."""
        return {
            "candidates": np.empty((n, self.k, self.cand_dim), np.float32),
            "user": np.empty((n, self.user_dim), np.float32),
            "instruction": np.empty((n, self.instr_dim), np.float32),
        }

    def build(
        self,
        state: UserState,
        candidates: np.ndarray,
        out: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Observations of n users.

        Args:
            state: the users; candidates: ``(n, K)`` item ids.
            out: arrays to fill (e.g. row slices of a larger batch); fresh ones when None.

        Returns:
            ``{"candidates": (n, K, dim + 5), "user": (n, user_dim), "instruction":
            (n, instr_dim)}`` float32.
        """
        n = state.n
        out = self.allocate(n) if out is None else out
        cand = out["candidates"]
        np.take(self.table, candidates, axis=0, out=cand, mode="clip")
        t = self.catalog.n_topics
        flat = np.take(self.catalog.topic, candidates) + (np.arange(n) * t)[:, None]
        c = self.n_item_cols
        cand[:, :, c] = ~np.take(state.familiar.reshape(-1), flat)
        cand[:, :, c + 1] = np.take(state.seen_mix.reshape(-1), flat)
        hist = state.history
        hv = hist >= 0
        mean_click = (
            np.take(self.embed, hist + 1, axis=0).sum(1) / np.maximum(hv.sum(1), 1)[:, None]
        )
        user = out["user"]
        for j, col in enumerate(
            (
                _squash(state.step.astype(np.float32)),
                np.minimum(state.day / self.horizon, 1.0),
                _squash(state.session.astype(np.float32)),
                state.recent_clicks,
                state.recent_skips,
                _squash(state.novel_clicks.astype(np.float32)),
                _squash(state.familiar_clicks.astype(np.float32)),
                _squash(state.life_novel.astype(np.float32)),
                _squash(state.life_familiar.astype(np.float32)),
            )
        ):
            user[:, j] = col
        user[:, N_USER_SCALARS : N_USER_SCALARS + t] = state.click_mix
        user[:, N_USER_SCALARS + t :] = np.clip(mean_click, -1, 1)
        kind = state.instr_kind.astype(np.int64)
        active = kind > 0
        d = self.catalog.dim
        instr = out["instruction"]
        instr[:, :N_INSTRUCTION_KINDS] = kind[:, None] == np.arange(1, N_INSTRUCTION_KINDS + 1)
        k0 = N_INSTRUCTION_KINDS
        instr[:, k0 : k0 + d] = self.centroids[np.where(active, state.instr_topic + 1, 0)]
        instr[:, k0 + d : k0 + 2 * d] = self.embed[np.where(active, state.instr_item + 1, 0)]
        instr[:, -1] = np.where(active, _squash(state.instr_age.astype(np.float32)), 0.0)
        return out
