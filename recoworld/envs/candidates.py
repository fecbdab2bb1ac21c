"""Candidate generation: K item ids per user in O(K), keyed by observable click history only.

Three sources fill fixed shares of the K slots: *interest* (up to five topics drawn from the
user's decaying clicked-topic mix, then items from those topics' popularity alias tables), *popular*
(the catalog-wide popularity alias table) and *random* (uniform). Users with no clicks yet get
popular items in the interest slots. Duplicates within a row are replaced by a deterministic
function of the duplicate and its slot, so the result is still a pure function of the user's
draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoworld import rng
from recoworld.catalog import Catalog
from recoworld.errors import ConfigError


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table for a discrete distribution: ``(accept (m,), alias (m,))``."""
    m = weights.size
    prob = weights / weights.sum() * m
    accept = np.ones(m)
    alias = np.arange(m)
    small = [i for i in range(m) if prob[i] < 1.0]
    large = [i for i in range(m) if prob[i] >= 1.0]
    while small and large:  # built once per catalog
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = prob[s], g
        prob[g] -= 1.0 - prob[s]
        (small if prob[g] < 1.0 else large).append(g)
    return accept, alias


@dataclass(frozen=True)
class CandidateMix:
    """Shares of the K candidate slots per source (must sum to 1)."""

    interest: float = 0.5
    popular: float = 0.3
    random: float = 0.2

    def __post_init__(self) -> None:
        vals = (self.interest, self.popular, self.random)
        if any(v < 0 or v > 1 for v in vals) or abs(sum(vals) - 1.0) > 1e-6:
            raise ConfigError(f"candidate mix {vals} must be three shares in [0, 1] summing to 1")


TOPIC_BLOCKS = 5  # interest slots share this many topic draws per user (slot j uses j % 5)


class CandidateGenerator:
    """Draws ``(n, K)`` candidate item ids from per-user streams."""

    def __init__(self, catalog: Catalog, k: int, mix: CandidateMix | None = None) -> None:
        self.catalog = catalog
        self.k = k
        mix = mix or CandidateMix()
        self.n_interest = round(k * mix.interest)
        self.n_popular = round(k * mix.popular)
        self.n_random = k - self.n_interest - self.n_popular
        self.pop_accept, self.pop_alias = alias_table(catalog.popularity)
        order = np.argsort(catalog.topic, kind="stable")
        sizes = np.bincount(catalog.topic, minlength=catalog.n_topics)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        accept = np.ones(catalog.n_items)
        alias = np.zeros(catalog.n_items, dtype=np.int64)
        for t in range(catalog.n_topics):  # once per catalog, over topics
            if sizes[t]:
                block = order[starts[t] : starts[t] + sizes[t]]
                a, al = alias_table(catalog.popularity[block])
                accept[starts[t] : starts[t] + sizes[t]] = a
                alias[starts[t] : starts[t] + sizes[t]] = al
        self.order, self.sizes, self.starts = order, sizes, starts
        self.rank = np.empty(catalog.n_items, dtype=np.int64)  # position within its topic
        self.rank[order] = np.arange(catalog.n_items) - starts[catalog.topic[order]]
        self.topic_accept = accept
        self.topic_alias_item = order[starts[catalog.topic[order]] + alias]  # alias as item id

    def draw(self, keys: np.ndarray, counter: np.ndarray, click_mix: np.ndarray) -> np.ndarray:
        """Candidates for n users.

        Args:
            keys: ``(n,)`` user stream keys; counter: ``(n,)`` uint64 step counters.
            click_mix: ``(n, n_topics)`` the users' observable decaying clicked-topic mix.

        Returns:
            ``(n, K)`` int64 item ids (distinct within a row unless the catalog is tiny).
        """
        n, k = keys.shape[0], self.k
        ni, n_items = self.n_interest, self.catalog.n_items
        nb = min(ni, TOPIC_BLOCKS)
        rand_lo = ni + self.n_popular
        u = rng.uniform_pairs(keys, counter, rng.CANDIDATES, k + nb)
        cand = np.empty((n, k), np.int64)
        cand[:, ni:rand_lo] = self._popular(u[:, ni:rand_lo])
        cand[:, rand_lo:] = (u[:, rand_lo:k] * n_items).astype(np.int64)
        if ni:
            cum = np.cumsum(click_mix, 1, dtype=np.float64)
            has = cum[:, -1] > 0
            block = (cum[:, None, :] <= (u[:, k:] * cum[:, -1:])[:, :, None]).sum(2)
            block = np.minimum(block, self.catalog.n_topics - 1)
            topic = block[:, np.arange(ni) % nb]
            x = u[:, :ni] * self.sizes[topic]
            jj = x.astype(np.int64)
            pos = self.starts[topic] + jj
            cand[:, :ni] = np.where(
                x - jj < self.topic_accept[pos], self.order[pos], self.topic_alias_item[pos]
            )
            if not has.all():  # users without clicks get popular items in the interest slots
                cold = np.flatnonzero(~has)
                cand[cold, :ni] = self._popular(u[cold, :ni])
        return self._dedupe(cand)

    def _popular(self, u: np.ndarray) -> np.ndarray:
        """Items from the catalog-wide popularity alias table, one per uniform."""
        x = u * self.catalog.n_items
        j = x.astype(np.int64)
        return np.where(x - j < self.pop_accept[j], j, self.pop_alias[j])

    def _dedupe(self, cand: np.ndarray) -> np.ndarray:
        """Replace repeats within a row by another item of the same topic (one pass)."""
        k = cand.shape[1]
        kind = np.int32 if self.catalog.n_items * k < 2**31 else np.int64
        srt = np.sort((cand * k + np.arange(k)).astype(kind), 1)  # item and slot, one key
        item = srt // k
        dup = np.zeros(cand.shape, dtype=bool)
        dup[:, 1:] = item[:, 1:] == item[:, :-1]
        if dup.any():
            r, c = np.nonzero(dup)
            pos = (srt[r, c] % k).astype(np.int64)
            old = cand[r, pos]
            t = self.catalog.topic[old]
            shift = 1 + (old * 40503 + pos * 2654435761) % np.maximum(self.sizes[t] - 1, 1)
            rank = (self.rank[old] + shift) % self.sizes[t]
            cand[r, pos] = self.order[self.starts[t] + rank]
        return cand
