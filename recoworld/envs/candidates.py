"""Candidate generation: K item ids per user in O(K), keyed by observable click history only.

Three sources fill fixed shares of the K slots: *interest* (up to five topics drawn from the
user's decaying clicked-topic mix, then items from those topics' alias tables over tempered
popularity, ``sqrt(popularity)``, so retrieval reaches past each topic's few hits), *popular*
(the catalog-wide popularity alias table) and *random* (uniform). Users with no clicks yet get
popular items in the interest slots. Repeats within a row are replaced by other items of the
same topic, deterministically, so rows are distinct and still a pure function of the user's
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


MAX_DEDUPE_ROUNDS = 8
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
                a, al = alias_table(np.sqrt(catalog.popularity[block]))  # tempered
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
        """Replace repeats within a row by other items of the same topic.

        Each round moves every repeat to the next item of its topic (in popularity-table order,
        offset by the round) and re-checks only the rows that had repeats. Repeats left after
        ``MAX_DEDUPE_ROUNDS`` (a topic smaller than its share of the row) take the first items
        missing from the row (a short loop over those rare rows, e.g. with tiny catalogs).
        """
        k = cand.shape[1]
        kind = np.int32 if self.catalog.n_items * k < 2**31 else np.int64
        slot = np.arange(k, dtype=kind)
        rows = np.arange(cand.shape[0])
        for round_ in range(MAX_DEDUPE_ROUNDS + 1):
            sub = cand[rows]
            srt = np.sort(sub.astype(kind) * k + slot, 1)  # item and slot in one key
            item = srt // k
            dup = item[:, 1:] == item[:, :-1]
            if not dup.any():
                return cand
            # the j-th repeat of an item in a row moves j places (distinct within the run)
            idx = np.arange(1, k)
            run = idx - np.maximum.accumulate(np.where(dup, 0, idx), axis=1)
            r, c = np.nonzero(dup)
            pos = (srt[r, c + 1] % k).astype(np.int64)
            if round_ == MAX_DEDUPE_ROUNDS:
                for row in np.unique(rows[r]):  # rare: the catalog is too small for the rule
                    cand[row] = _distinct(cand[row], self.catalog.n_items)
                return cand
            old = sub[r, pos]
            t = self.catalog.topic[old]
            rank = (self.rank[old] + run[r, c] + round_ * k) % self.sizes[t]
            sub[r, pos] = self.order[self.starts[t] + rank]
            cand[rows] = sub
            rows = rows[np.unique(r)]
        return cand


def _distinct(row: np.ndarray, n_items: int) -> np.ndarray:
    """``row`` with later repeats replaced by the smallest item ids it lacks."""
    _, first = np.unique(row, return_index=True)
    keep = np.zeros(row.size, bool)
    keep[first] = True
    missing = np.setdiff1d(np.arange(n_items), row)[: (~keep).sum()]
    out = row.copy()
    out[~keep] = missing
    return out
