"""Short descriptions of spaces for error messages, and space comparison."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


def describe_space(space: spaces.Space[Any]) -> str:
    """A one-line description: ``Dict(candidates=Box(-1..1, (10, 37), float32), ...)``."""
    if isinstance(space, spaces.Dict):
        inner = ", ".join(f"{k}={describe_space(v)}" for k, v in space.spaces.items())
        return f"Dict({inner})"
    if isinstance(space, spaces.Box):
        lo, hi = np.min(space.low), np.max(space.high)
        return f"Box({lo:g}..{hi:g}, {space.shape}, {space.dtype})"
    if isinstance(space, spaces.MultiDiscrete):
        return f"MultiDiscrete({space.nvec.tolist()})"
    if isinstance(space, spaces.Discrete):
        return f"Discrete({space.n})"
    return str(space)


def space_difference(saved: spaces.Space[Any], current: spaces.Space[Any]) -> str | None:
    """Where ``current`` differs from ``saved`` (None when equal), e.g.
    ``"candidates: Box(..., (10, 37)) != Box(..., (20, 37))"``."""
    if saved == current:
        return None
    if isinstance(saved, spaces.Dict) and isinstance(current, spaces.Dict):
        keys = sorted(set(saved.spaces) | set(current.spaces))
        parts = []
        for k in keys:
            a, b = saved.spaces.get(k), current.spaces.get(k)
            if a is None or b is None:
                parts.append(f"key {k!r} only in the {'env' if a is None else 'saved model'}")
            elif a != b:
                parts.append(f"{k!r}: saved {describe_space(a)}, env {describe_space(b)}")
        if parts:
            return "; ".join(parts)
    return f"saved {describe_space(saved)}, env {describe_space(current)}"
