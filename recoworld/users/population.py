"""`Population`: a weighted mixture of user segments, sampled from per-user streams."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recoworld import rng
from recoworld.catalog import Catalog
from recoworld.errors import ConfigError
from recoworld.users.parametric import ParametricUser
from recoworld.users.params import UserParams
from recoworld.users.sessions import start_sessions
from recoworld.users.state import UserState

DEFAULT_HISTORY = 10


@dataclass(frozen=True)
class Population:
    """A mixture of parametric segments; each user belongs to one, drawn by weight.

    Args:
        segments: the user models (each with its own parameter priors).
        weights: non-negative mixture weights (normalised); defaults to equal.
    """

    segments: tuple[ParametricUser, ...]
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.segments:
            raise ConfigError("a Population needs at least one segment")
        for s in self.segments:
            if not isinstance(s, ParametricUser):
                raise ConfigError(
                    f"segment {s!r} is not a ParametricUser; LLM segments join "
                    "through recoworld.users.llm"
                )
        w = self.weights or tuple(1.0 for _ in self.segments)
        if len(w) != len(self.segments) or any(x < 0 for x in w) or sum(w) <= 0:
            raise ConfigError(
                f"weights {w} must be {len(self.segments)} non-negative numbers with a positive sum"
            )
        object.__setattr__(self, "weights", tuple(float(x) / sum(w) for x in w))

    @classmethod
    def of(cls, model: ParametricUser | Population) -> Population:
        return model if isinstance(model, Population) else cls((model,))

    @property
    def dynamics(self) -> ParametricUser:
        """The model whose rules step every user (parameters are per-user arrays)."""
        return self.segments[0]

    def sample_keys(
        self,
        keys: np.ndarray,
        user_ids: np.ndarray,
        catalog: Catalog,
        history: int = DEFAULT_HISTORY,
    ) -> UserState:
        """Users with the given stream keys, each at the start of its first session.

        Args:
            keys: ``(n,)`` uint64 stream keys (see `recoworld.rng.user_keys`).
            user_ids: ``(n,)`` user ids recorded in logs.
            catalog: the catalog whose topics anchor interests.
            history: length H of the click history.

        Returns:
            A `UserState` of n users; user u's draws depend only on ``keys[u]``.
        """
        n = keys.shape[0]
        u = rng.uniforms(keys, 1, rng.SAMPLE, 1)[:, 0]
        segment = np.minimum(
            np.searchsorted(np.cumsum(self.weights), u, side="right"), len(self.segments) - 1
        )
        params = UserParams.stack([s.params for s in self.segments], segment)
        state = UserState.empty(n, catalog.dim, catalog.n_topics, history, params)
        state.key[:] = keys
        state.user_id[:] = user_ids
        state.segment[:] = segment
        for j, seg in enumerate(self.segments):  # loop over segments (a few), not users
            rows = np.flatnonzero(segment == j)
            if rows.size:
                seg.sample_into(state, rows, catalog)
        start_sessions(state, np.arange(n))
        return state

    def sample(
        self, rng_: np.random.Generator, n: int, catalog: Catalog, history: int = DEFAULT_HISTORY
    ) -> UserState:
        """n users whose stream keys are drawn from ``rng_`` (ids 0 .. n-1)."""
        if n < 1:
            raise ConfigError(f"n={n} users; ask for at least 1")
        keys = rng_.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
        return self.sample_keys(keys, np.arange(n), catalog, history)

    # --------------------------------------------------------------- JSON I/O
    def to_json(self) -> str:
        return json.dumps(
            {
                "segments": [{"name": s.name, "params": s.params.as_dict()} for s in self.segments],
                "weights": list(self.weights),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Population:
        data = json.loads(text)
        try:
            segs = tuple(
                ParametricUser(UserParams(**s["params"]), name=s.get("name", "custom"))
                for s in data["segments"]
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"population JSON is malformed ({exc}); expected "
                '{"segments": [{"name":..., "params": {...}}], "weights": [...]}'
            ) from exc
        return cls(segs, tuple(data.get("weights", ())))


def make_population(
    users: str | ParametricUser | Population | Sequence[ParametricUser],
) -> Population:
    """A population from a preset name, a model, a population or a list of models."""
    from recoworld.users.presets import preset

    if isinstance(users, str):
        return Population.of(preset(users))
    if isinstance(users, (ParametricUser, Population)):
        return Population.of(users)
    return Population(tuple(users))
