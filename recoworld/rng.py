"""Counter-based per-user random streams.

Every draw that concerns a user comes from a hash of (the user's key, a counter, a purpose,
a column), so a user's trajectory does not depend on the batch it is simulated in, on which other
users are active, or on how users are sharded over workers. The hash is SplitMix64's finaliser over
``uint64`` arrays: a handful of vectorised integer operations per draw.

A user's key is itself a hash of (run seed, user id): see `user_keys`.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / float(1 << 53)

# Purposes separate the streams used for different decisions at the same counter.
SAMPLE = 1  # population sampling (user parameters, interests)
SESSION = 2  # session start (novelty propensity)
STEP = 3  # per-step response (choice, watch, like, leave, session end)
CANDIDATES = 4  # candidate generation


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, elementwise over a ``uint64`` array (returns a new array)."""
    x = x ^ (x >> _S30)
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def user_keys(seed: int | np.ndarray, user_ids: np.ndarray) -> np.ndarray:
    """Keys of users ``user_ids`` under run seed(s) ``seed``.

    Args:
        seed: non-negative run seed, or ``(n,)`` seeds (one per user).
        user_ids: ``(n,)`` integer user ids.

    Returns:
        ``(n,)`` uint64 keys; equal (seed, id) pairs give equal keys.
    """
    s = mix(np.atleast_1d(np.asarray(seed).astype(np.uint64)))
    ids = np.atleast_1d(np.asarray(user_ids).astype(np.uint64))
    return mix(ids * _GOLDEN + s)


def uniforms(keys: np.ndarray, counter: np.ndarray | int, purpose: int, n_draws: int) -> np.ndarray:
    """Uniform draws in [0, 1) from each user's stream.

    Args:
        keys: ``(n,)`` uint64 user keys.
        counter: ``(n,)`` or scalar non-negative integer counter (e.g. session and step packed).
        purpose: one of the module's purpose constants.
        n_draws: number of columns.

    Returns:
        ``(n, n_draws)`` float64 in [0, 1), a pure function of (key, counter, purpose, column).
    """
    ctr = np.atleast_1d(np.asarray(counter).astype(np.uint64))
    salt = np.uint64((purpose * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    base = mix(keys ^ mix(ctr * _M2 + salt))
    cols = (np.arange(1, n_draws + 1, dtype=np.uint64) * _GOLDEN)[None, :]
    bits = mix(base[:, None] + cols)
    return (bits >> _S11).astype(np.float64) * _TO_UNIT


def uniform_pairs(
    keys: np.ndarray, counter: np.ndarray | int, purpose: int, n_draws: int
) -> np.ndarray:
    """Like `uniforms` but two 32-bit-resolution draws per hash (half the cost), for bulk use
    such as candidate generation. Returns ``(n, n_draws)`` float64 in [0, 1)."""
    ctr = np.atleast_1d(np.asarray(counter).astype(np.uint64))
    salt = np.uint64((purpose * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    base = mix(keys ^ mix(ctr * _M2 + salt))
    half = (n_draws + 1) // 2
    cols = (np.arange(1, half + 1, dtype=np.uint64) * _GOLDEN)[None, :]
    bits = mix(base[:, None] + cols)
    words = bits.view(np.uint32).reshape(bits.shape[0], 2 * half)[:, :n_draws]
    return words.astype(np.float64) * (1.0 / 4294967296.0)


def step_counter(session: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Pack (session index, step in session) into one ``uint64`` counter per user."""
    return (session.astype(np.uint64) << np.uint64(32)) | step.astype(np.uint64)


def normals(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Standard normal draws from two arrays of uniforms (Box-Muller), same shape as ``u1``."""
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def gamma(shape: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Gamma(shape, 1) draws by Marsaglia-Tsang, vectorised with a fixed number of attempts.

    Args:
        shape: ``(n,)`` positive shapes.
        u: ``(n, 3 * attempts + 1)`` uniforms; each attempt uses three columns, the last column
            boosts shapes below 1 (``Gamma(a) = Gamma(a + 1) * U ** (1 / a)``).

    Returns:
        ``(n,)`` draws. Each attempt is accepted with probability above 0.95, so with 8 attempts a
        failure (then the mean ``shape`` is returned) has probability below 1e-10.
    """
    a = np.asarray(shape, dtype=np.float64)
    boost = a < 1.0
    a1 = np.where(boost, a + 1.0, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    attempts = (u.shape[1] - 1) // 3
    out = a1.copy()
    done = np.zeros(a.shape, dtype=bool)
    for j in range(attempts):  # fixed, tiny loop over attempts (not over users)
        x = normals(u[:, 3 * j], u[:, 3 * j + 1])
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (
            np.log(np.maximum(u[:, 3 * j + 2], 1e-300))
            < 0.5 * x * x + d - d * np.maximum(v, 1e-300) + d * np.log(np.maximum(v, 1e-300))
        )
        take = ok & ~done
        out[take] = d[take] * v[take]
        done |= ok
        if done.all():  # later attempts would change nothing
            break
    last = np.maximum(u[:, -1], 1e-300)
    return np.where(boost, out * last ** (1.0 / a), out)


def beta(a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Beta(a, b) draws as X / (X + Y), X and Y gamma; ``u`` is ``(n, 2 m)``, m = 25 is ample."""
    half = u.shape[1] // 2
    x = gamma(a, u[:, :half])
    y = gamma(b, u[:, half:])
    return x / np.maximum(x + y, 1e-300)


def geometric_gap(mean: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Gaps ``g >= 1`` with ``g - 1 ~ Geometric`` and ``E[g] = mean`` (inverse CDF, int64)."""
    m = np.maximum(np.asarray(mean, dtype=np.float64), 1.0 + 1e-9)
    p = 1.0 / m  # P(g = 1)
    extra = np.floor(np.log1p(-u) / np.log1p(-p))
    return 1 + np.minimum(extra, 1e6).astype(np.int64)
