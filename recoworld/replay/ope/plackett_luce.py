"""Plackett-Luce slate probabilities: sampling, per-slot conditionals, marginals."""

from __future__ import annotations

import numpy as np

from recoworld.errors import ConfigError
from recoworld.replay.ope.base import _MAX_BOOT_CELLS


# ------------------------------------------------- Plackett-Luce slate probabilities
def plackett_luce_sample(
    probabilities: np.ndarray, slate_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Slates drawn item by item without replacement from ``probabilities`` (Gumbel top-k).

    Args:
        probabilities: ``(n, K)`` a distribution over each row's candidates, with at least
            ``slate_size`` positive entries per row.
        slate_size: L.
        rng: the generator.

    Returns:
        ``(n, L)`` int64 candidate indices, best first.
    """
    with np.errstate(divide="ignore"):
        keys = np.log(probabilities) + rng.gumbel(size=probabilities.shape)
    part = np.argpartition(-keys, slate_size - 1, axis=1)[:, :slate_size]
    order = np.argsort(-np.take_along_axis(keys, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1).astype(np.int64)


def plackett_luce_conditionals(probabilities: np.ndarray, slates: np.ndarray) -> np.ndarray:
    """``(n, L)`` probability of each slot's candidate given the slots above it.

    ``p[s_k] / (1 - sum_{j<k} p[s_j])``: what `RewardInteractionIPS` and `SlateIPS` take (and
    what recommenders write in the log's ``propensity`` column).

    Args:
        probabilities: ``(n, K)``; slates: ``(n, L)`` candidate indices.
    """
    p = np.take_along_axis(probabilities, slates, 1)
    above = np.cumsum(p, 1) - p
    return p / np.maximum(1.0 - above, 1e-300)


def plackett_luce_marginals(
    probabilities: np.ndarray,
    slates: np.ndarray,
    rng: np.random.Generator | None = None,
    n_samples: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Marginal slot probabilities of the logged slates' items under Plackett-Luce sampling.

    Returns ``q[:, k]``, the probability that the policy puts candidate ``slates[:, k]`` at
    slot k, and ``mass[:, k]``, the probability that it shows that candidate in any of the L
    slots: what `IndependentIPS` and `PseudoInverse` take. Exact for uniform rows, for
    ``L <= 2``, and for ``L == 3`` with ``K <= 100``; otherwise a Rao-Blackwellised Monte Carlo
    average over ``n_samples`` sampled prefixes per row: ``q(k, a)`` is the mean over prefixes
    of ``P(a at slot k | prefix) = 1[a not in prefix] p_a / (1 - p(prefix))``. It is unbiased,
    so estimators linear in ``q`` (IIPS and PI, in the target's ``q``) stay unbiased.

    Args:
        probabilities: ``(n, K)``; slates: ``(n, L)`` candidate indices.
        rng: generator of the Monte Carlo draws (needed when they are used).
        n_samples: prefixes sampled per row for the Monte Carlo average.

    Returns:
        ``(q (n, L), mass (n, L))`` float64.
    """
    n, k = probabilities.shape
    n_slots = slates.shape[1]
    p = np.take_along_axis(probabilities, slates, 1)
    q = np.empty((n, n_slots))
    q[:, 0] = p[:, 0]
    if n_slots == 1:
        return q, q.copy()
    uniform = np.isclose(probabilities, probabilities[:, :1], rtol=1e-9, atol=0).all(1)
    mass = np.empty((n, n_slots))
    q[uniform] = 1.0 / k  # every candidate at every slot with probability 1 / K
    mass[uniform] = n_slots / k
    rows = np.flatnonzero(~uniform)
    if rows.size == 0:
        return q, mass
    pr, sl = probabilities[rows], slates[rows]
    if n_slots == 2 or (n_slots == 3 and k <= 100):
        q[rows], mass[rows] = _pl_exact(pr, sl)
    else:
        if rng is None:
            raise ConfigError("plackett_luce_marginals needs rng= for slates of 4 or more slots")
        q[rows], mass[rows] = _pl_sampled(pr, sl, rng, n_samples)
    return q, mass


def _pl_exact(probabilities: np.ndarray, slates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact marginals for L = 2 or 3: ``q(1, b) = p_b sum_{a != b} p_a / (1 - p_a)``;
    ``q(2, c) = p_c`` times the sum of ``p_a p_b / ((1 - p_a)(1 - p_a - p_b))`` over pairs
    ``a != b``, both ``!= c``."""
    n, k = probabilities.shape
    ratio = probabilities / np.maximum(1.0 - probabilities, 1e-300)
    table = [probabilities, probabilities * (ratio.sum(1, keepdims=True) - ratio)]
    if slates.shape[1] == 3:
        third = np.empty_like(probabilities)
        chunk = max(1, _MAX_BOOT_CELLS // max(k * k, 1))
        idx = np.arange(k)
        for lo in range(0, n, chunk):  # (rows, K, K) pair tables, a chunk at a time
            p = probabilities[lo : lo + chunk]
            rest = np.maximum(1.0 - p[:, :, None] - p[:, None, :], 1e-300)
            pair = ratio[lo : lo + chunk, :, None] * p[:, None, :] / rest
            pair[:, idx, idx] = 0.0
            total = pair.sum((1, 2))[:, None]
            third[lo : lo + chunk] = p * (total - pair.sum(2) - pair.sum(1))
        table.append(third)
    at = np.stack(table, 1)  # (n, L, K): q(slot, candidate)
    q = np.stack([at[np.arange(n), j, slates[:, j]] for j in range(slates.shape[1])], 1)
    mass = np.take_along_axis(at.sum(1), slates, 1)
    return q, mass


def _pl_prefixes(
    probabilities: np.ndarray, m: int, length: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n, m, length)`` Plackett-Luce prefixes, m per row.

    Each item is drawn by inverse CDF (one binary search in the rows' stacked CDFs; callers
    pass a cache-sized chunk of rows) and redrawn while it repeats an earlier one, which is
    exactly sampling from the remaining mass; rows where that keeps failing (nearly all mass
    already drawn) finish with a Gumbel draw over the remaining items.
    """
    n, k = probabilities.shape
    cdf = np.cumsum(probabilities, 1)
    stacked = (cdf / cdf[:, -1:] + np.arange(n)[:, None]).ravel()  # row i spans (i, i + 1]
    row = np.repeat(np.arange(n), m)
    draws = np.empty((n * m, length), np.int64)
    for j in range(length):
        todo = np.arange(n * m)
        for _ in range(30):
            at = row[todo]
            lo = np.searchsorted(stacked, at + rng.random(todo.size), side="right") - at * k
            lo = np.minimum(lo, k - 1)
            dup = (draws[todo, :j] == lo[:, None]).any(1)
            draws[todo[~dup], j] = lo[~dup]
            todo = todo[dup]
            if todo.size == 0:
                break
        if todo.size:  # the rare rows whose remaining mass is tiny
            rest = probabilities[row[todo]].copy()
            np.put_along_axis(rest, draws[todo, :j], 0.0, 1)
            with np.errstate(divide="ignore"):
                keys = np.log(rest) + rng.gumbel(size=rest.shape)
            draws[todo, j] = keys.argmax(1)
    return draws.reshape(n, m, length)


def _pl_sampled(
    probabilities: np.ndarray, slates: np.ndarray, rng: np.random.Generator, n_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rao-Blackwellised Monte Carlo marginals (see `plackett_luce_marginals`)."""
    n = probabilities.shape[0]
    n_slots = slates.shape[1]
    q_all = np.zeros((n, n_slots, n_slots))  # [row, slot, logged item j]
    chunk = max(1, _MAX_BOOT_CELLS // (n_samples * n_slots * n_slots))
    for lo in range(0, n, chunk):  # chunks of rows bound the (rows, samples, L, L) arrays
        pr, sl = probabilities[lo : lo + chunk], slates[lo : lo + chunk]
        r, m = pr.shape[0], n_samples
        draw = _pl_prefixes(pr, m, n_slots - 1, rng)
        p_draw = np.take_along_axis(pr[:, None, :], draw, 2)
        # remaining mass before slot s (s = 0 .. L-1) and whether item j is in that prefix
        rem = 1.0 - np.concatenate([np.zeros((r, m, 1)), np.cumsum(p_draw, 2)], 2)
        seen = draw[:, :, :, None] == sl[:, None, None, :]  # (r, m, L-1, L)
        in_prefix = np.concatenate(
            [np.zeros((r, m, 1, n_slots), bool), np.cumsum(seen, 2) > 0], 2
        )  # (r, m, L, L): item j already shown before slot s
        p_logged = np.take_along_axis(pr, sl, 1)[:, None, None, :]
        cond = np.where(in_prefix, 0.0, p_logged / np.maximum(rem, 1e-300)[:, :, :, None])
        q_all[lo : lo + chunk] = cond.mean(1)
    q = q_all[:, np.arange(n_slots), np.arange(n_slots)]
    return q, q_all.sum(1)
