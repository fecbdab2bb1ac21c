"""The one definition of each recommender metric.

``simulate``, ``evaluate`` and ``benchmarks`` all import their metrics from here, so a number
with a given name means the same thing everywhere. Every function is pure numpy, vectorised over
users and slots, and returns float64 (a Python ``float`` for scalars). Conventions: item ids are
integers in ``[0, n_items)`` and ``-1`` means "no item" (an empty slot, no click); a ``mask`` of
shape ``(n, L)`` is True on valid slots; a quantity undefined on empty input (a slate with fewer
than two items, no valid clicks) is 0.0, so averages over users stay defined.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}; e.g. {name}=10.")
    return int(value)


def _int_array(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.size == 0 and arr.dtype == np.float64:  # np.asarray([]) is float64; allow empty lists
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must hold integers, got dtype {arr.dtype}; "
            f"cast with np.asarray({name}, dtype=np.int64)."
        )
    return arr.astype(np.int64, copy=False)


def _in_range(arr: np.ndarray, name: str, low: int, high: int, hint: str) -> np.ndarray:
    bad = (arr < low) | (arr >= high)
    if bad.any():
        raise ValueError(
            f"{name} must lie in [{low}, {high}), got {arr[bad].flat[0]} "
            f"at index {tuple(int(i) for i in np.argwhere(bad)[0])}; {hint}."
        )
    return arr


def _ids(values: ArrayLike, name: str, n_items: int) -> np.ndarray:
    hint = f"use -1 for 'no item' and ids below n_items={n_items}"
    return _in_range(_int_array(values, name), name, -1, n_items, hint)


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}; "
            "pass one entry of each per event."
        )


def _slate_mask(mask: ArrayLike | None, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    arr = np.asarray(mask)
    if arr.dtype != np.bool_ or arr.shape != shape:
        raise ValueError(
            f"mask must be a bool array of shape {shape} (n, L), got dtype {arr.dtype} and shape "
            f"{arr.shape}; pass mask=item_ids >= 0 or leave it None when every slot is valid."
        )
    return arr


def _pair_mean(same_sum: np.ndarray, k: np.ndarray) -> np.ndarray:
    """1 - same_sum / (ordered pairs among k items), and 0.0 where k < 2."""
    pairs = k * (k - 1.0)
    out = np.zeros(k.shape, dtype=np.float64)
    ok = k >= 2
    out[ok] = 1.0 - same_sum[ok] / pairs[ok]
    return out


def ctr(clicks: ArrayLike) -> float:
    """Click-through rate: the share of impressions that were clicked (the mean of ``clicks``).

    Args:
        clicks: Bool or 0/1 integer array of any shape, one entry per impression.
    """
    arr = np.asarray(clicks)
    if arr.size == 0:
        raise ValueError(f"clicks is empty (shape {arr.shape}); CTR needs at least one impression.")
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"clicks must be bool or 0/1 int, got {arr.dtype}; pass clicked == 1.")
    _in_range(arr.astype(np.int64), "clicks", 0, 2, "pass a bool array (True = clicked)")
    return float(np.mean(arr, dtype=np.float64))


def intra_list_diversity(slate_embeddings: ArrayLike, mask: ArrayLike | None = None) -> np.ndarray:
    """Intra-list diversity: 1 - mean pairwise cosine similarity within each slate.

    Uses ``sum_{i != j} e_i . e_j = |sum_i e_i|^2 - sum_i |e_i|^2``, so the cost is O(n L d).

    Args:
        slate_embeddings: Unit-norm item embeddings, shape ``(n, L, d)``. Masked slots may hold
            anything (zeros, NaN).
        mask: Bool ``(n, L)``, True where the slot holds an item. None means all slots are valid.

    Returns:
        ``(n,)`` float64 in ``[0, 2]``; 0.0 for slates with fewer than 2 valid items.
    """
    emb = np.asarray(slate_embeddings, dtype=np.float64)
    if emb.ndim != 3:
        raise ValueError(f"slate_embeddings must have shape (n, L, d), got {emb.shape}; add axes.")
    valid = _slate_mask(mask, emb.shape[:2])
    emb = np.where(valid[..., None], emb, 0.0)
    sq_norms = np.einsum("nld,nld->nl", emb, emb)
    not_unit = valid & ~np.isclose(sq_norms, 1.0, atol=1e-6)
    if not_unit.any():
        where = tuple(int(i) for i in np.argwhere(not_unit)[0])
        raise ValueError(
            f"slate_embeddings must be unit vectors, got norm {np.sqrt(sq_norms[where]):.6g} at "
            f"(slate, slot) {where}; normalise with e / np.linalg.norm(e, axis=-1, keepdims=True)."
        )
    total = emb.sum(axis=1)
    cross = np.einsum("nd,nd->n", total, total) - sq_norms.sum(axis=1)
    return _pair_mean(cross, valid.sum(axis=1).astype(np.float64))


def topic_diversity(
    slate_topics: ArrayLike, n_topics: int, mask: ArrayLike | None = None
) -> np.ndarray:
    """Topic diversity: the share of distinct item pairs in a slate whose topics differ.

    Args:
        slate_topics: Integer topic of each slot, shape ``(n, L)``, in ``[0, n_topics)`` on valid
            slots (masked slots may hold anything, e.g. -1).
        n_topics: Number of topics.
        mask: Bool ``(n, L)``, True where the slot holds an item. None means all slots are valid.

    Returns:
        ``(n,)`` float64 in ``[0, 1]``; 0.0 for slates with fewer than 2 valid items.
    """
    n_topics = _positive_int(n_topics, "n_topics")
    topics = _int_array(slate_topics, "slate_topics")
    if topics.ndim != 2:
        raise ValueError(f"slate_topics must have shape (n, L), got {topics.shape}; add axes.")
    valid = _slate_mask(mask, topics.shape)
    hint = "pass a mask marking padded slots invalid"
    _in_range(np.where(valid, topics, 0), "slate_topics", 0, n_topics, hint)
    rows = np.broadcast_to(np.arange(topics.shape[0])[:, None], topics.shape)
    flat = rows[valid] * n_topics + topics[valid]
    counts = np.bincount(flat, minlength=topics.shape[0] * n_topics).reshape(-1, n_topics)
    same = (counts * (counts - 1.0)).sum(axis=1)
    return _pair_mean(same, valid.sum(axis=1).astype(np.float64))


def self_information(item_ids: ArrayLike, item_probability: ArrayLike) -> np.ndarray:
    """Self-information ``-log2 p(item)`` of each item id.

    Probabilities below ``1 / (10 * n_items)`` (zeros included) are clipped to that floor, so an
    item nobody consumed is very novel but finite.

    Args:
        item_ids: Integer ids of any shape; -1 means "no item".
        item_probability: ``(n_items,)`` share of users who consumed each item (see
            :func:`item_consumption_share`) or a popularity prior, in ``[0, 1]``.

    Returns:
        float64 array shaped like ``item_ids``; NaN where the id is -1.
    """
    prob = np.asarray(item_probability, dtype=np.float64)
    if prob.ndim != 1 or prob.size == 0:
        raise ValueError(f"item_probability must be (n_items,), got {prob.shape}; flatten it.")
    bad = ~np.isfinite(prob) | (prob < 0) | (prob > 1)
    if bad.any():
        raise ValueError(
            f"item_probability must be in [0, 1], got {prob[bad][0]} at index "
            f"{int(np.argmax(bad))}; pass shares, e.g. item_consumption_share(...)."
        )
    ids = _ids(item_ids, "item_ids", prob.size)
    info = -np.log2(np.maximum(prob, 1.0 / (10 * prob.size)))
    return np.where(ids >= 0, info[np.maximum(ids, 0)], np.nan)


def novelty(item_ids: ArrayLike, item_probability: ArrayLike) -> float:
    """Mean self-information of the valid ids (-1 ignored); 0.0 if there are none.

    Args:
        item_ids: Integer ids of any shape, e.g. recommended or clicked items; -1 means "no item".
        item_probability: ``(n_items,)``, as in :func:`self_information`.
    """
    info = self_information(item_ids, item_probability)
    valid = ~np.isnan(info)
    return float(info[valid].mean()) if valid.any() else 0.0


def item_consumption_share(
    clicked_ids: ArrayLike, user_ids: ArrayLike, n_items: int, n_users: int | None = None
) -> np.ndarray:
    """Share of distinct users who consumed each item, to use as ``item_probability``.

    Args:
        clicked_ids: Integer item id per event, any shape; -1 (no click) is ignored.
        user_ids: Integer user id per event (>= 0), same shape as ``clicked_ids``.
        n_items: Catalog size.
        n_users: Population size. None counts the distinct ``user_ids`` (rows with a -1 click
            included), so users who never clicked still count in the denominator.

    Returns:
        ``(n_items,)`` float64 in ``[0, 1]``; all zeros when there are no users.
    """
    n_items = _positive_int(n_items, "n_items")
    items = _ids(clicked_ids, "clicked_ids", n_items)
    users = _int_array(user_ids, "user_ids")
    _same_shape(items, users, "clicked_ids", "user_ids")
    # The bound without n_users keeps user * n_items + item inside int64.
    high = (
        np.iinfo(np.int64).max // n_items if n_users is None else _positive_int(n_users, "n_users")
    )
    _in_range(users, "user_ids", 0, high, "use 0-based user ids below n_users")
    denominator = np.unique(users).size if n_users is None else n_users
    pairs = np.unique(users[items >= 0] * n_items + items[items >= 0])
    counts = np.bincount(pairs % n_items, minlength=n_items).astype(np.float64)
    return counts / denominator if denominator else counts


def serendipity(
    clicked_ids: ArrayLike, clicked_topics: ArrayLike, consumed_topics_before: ArrayLike
) -> float:
    """Share of clicks whose topic the user had not consumed before; 0.0 if there are no clicks.

    Args:
        clicked_ids: ``(n,)`` integer clicked item per event; -1 (no click) is ignored.
        clicked_topics: ``(n,)`` integer topic of each clicked item (anything where the id is -1).
        consumed_topics_before: ``(n, n_topics)`` bool, True where the event's user had consumed
            the topic before this click.
    """
    ids = _int_array(clicked_ids, "clicked_ids")
    topics = _int_array(clicked_topics, "clicked_topics")
    before = np.asarray(consumed_topics_before)
    if ids.ndim != 1 or before.ndim != 2 or before.dtype != np.bool_ or len(before) != ids.size:
        raise ValueError(
            f"need clicked_ids (n,) and bool consumed_topics_before (n, n_topics), got "
            f"{ids.shape} and {before.dtype} {before.shape}; align one row per click event."
        )
    _same_shape(ids, topics, "clicked_ids", "clicked_topics")
    _in_range(ids, "clicked_ids", -1, np.iinfo(np.int64).max, "use -1 for 'no click'")
    valid = ids >= 0
    if not valid.any():
        return 0.0
    hint = "map each clicked item to its topic"
    _in_range(np.where(valid, topics, 0), "clicked_topics", 0, before.shape[1], hint)
    seen = before[np.flatnonzero(valid), topics[valid]]
    return float(np.mean(~seen))


def coverage(shown_ids: ArrayLike, n_items: int) -> float:
    """Catalog coverage: the share of the ``n_items`` items shown at least once (-1 ignored).

    Args:
        shown_ids: Integer item ids of any shape, e.g. ``(n_steps, n_users, L)``.
        n_items: Catalog size.
    """
    n_items = _positive_int(n_items, "n_items")
    ids = _ids(shown_ids, "shown_ids", n_items)
    return float(np.unique(ids[ids >= 0]).size / n_items)


def exposure_counts(
    shown_ids: ArrayLike, n_items: int, position_weights: ArrayLike | None = None
) -> np.ndarray:
    """How often each item was shown, optionally weighted by slot position (-1 ignored).

    Args:
        shown_ids: Integer item ids, shape ``(..., L)``.
        n_items: Catalog size.
        position_weights: ``(L,)`` non-negative weight of each slot (e.g. ``1 / log2(rank + 1)``).
            None counts every impression as 1.

    Returns:
        ``(n_items,)`` float64 exposure per item.
    """
    n_items = _positive_int(n_items, "n_items")
    ids = _ids(shown_ids, "shown_ids", n_items)
    if position_weights is None:
        weights = np.ones(ids.shape)
    else:
        w = np.asarray(position_weights, dtype=np.float64)
        if ids.ndim == 0 or w.shape != ids.shape[-1:] or not np.all(np.isfinite(w) & (w >= 0)):
            raise ValueError(
                f"position_weights must be finite, >= 0 and of shape (L,) = {ids.shape[-1:]}, got "
                f"shape {w.shape}; pass one weight per slot of shown_ids {ids.shape}."
            )
        weights = np.broadcast_to(w, ids.shape)
    valid = ids >= 0
    return np.bincount(ids[valid], weights=weights[valid], minlength=n_items).astype(np.float64)


def gini(values: ArrayLike) -> float:
    """Gini coefficient of a non-negative vector: 0 is equal, ``(n - 1) / n`` is one holder.

    Args:
        values: ``(n,)`` non-negative values, e.g. :func:`exposure_counts`.

    Returns:
        The Gini coefficient; 0.0 when every value is zero.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {x.shape}; flatten it.")
    bad = ~np.isfinite(x) | (x < 0)
    if bad.any():
        raise ValueError(
            f"values must be finite and non-negative, got {x[bad][0]} at index "
            f"{int(np.argmax(bad))}; shift or clip values, e.g. np.clip(values, 0, None)."
        )
    total = x.sum()
    if total == 0:
        return 0.0
    rank = np.arange(1, x.size + 1)
    return float(2.0 * np.dot(rank, np.sort(x)) / (x.size * total) - (x.size + 1.0) / x.size)


def retention_curve(user_ids: ArrayLike, days: ArrayLike, n_users: int, n_days: int) -> np.ndarray:
    """Share of the population active on each day, counting each user once per day.

    Args:
        user_ids: Integer user id of each activity record, any shape, in ``[0, n_users)``.
        days: Integer day of each record, same shape, in ``[0, n_days)``.
        n_users: Population size (the denominator).
        n_days: Number of days.

    Returns:
        ``(n_days,)`` float64 in ``[0, 1]``: the share of ``n_users`` active on each day.
    """
    n_users = _positive_int(n_users, "n_users")
    n_days = _positive_int(n_days, "n_days")
    users = _int_array(user_ids, "user_ids")
    day = _int_array(days, "days")
    _same_shape(users, day, "user_ids", "days")
    _in_range(users, "user_ids", 0, n_users, "use 0-based user ids below n_users")
    _in_range(day, "days", 0, n_days, "use 0-based days below n_days")
    active = np.unique(day * n_users + users) // n_users  # distinct (day, user) pairs -> day
    return np.bincount(active, minlength=n_days) / n_users


def mean_ci(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of a normal-approximation confidence interval, ignoring NaN.

    The half-width is ``z * std(ddof=1) / sqrt(n)`` with ``z`` the standard normal quantile (not
    Student's t, so it is slightly narrow for small ``n``).

    Args:
        values: Values of any shape; NaN entries are dropped.
        confidence: Coverage in (0, 1).

    Returns:
        ``(mean, half_width)``; mean NaN with no values, half-width NaN with fewer than 2.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}; e.g. confidence=0.95.")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size < 2:
        return (float(x[0]) if x.size else float("nan")), float("nan")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    return float(x.mean()), float(z * x.std(ddof=1) / np.sqrt(x.size))
