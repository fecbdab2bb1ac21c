"""`Population`: a weighted mixture of user segments, sampled from per-user streams."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    """A mixture of segments; each user belongs to one, drawn by weight.

    Segments are `ParametricUser`s or `recoworld.users.LLMUser`s (persona segments); a mix of
    both steps through `recoworld.users.llm.MixedUsers`, parametric rows still in one batch.

    Args:
        segments: the user models (each with its own parameter priors).
        weights: non-negative mixture weights (normalised); defaults to equal.
    """

    segments: tuple[Any, ...]
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.segments:
            raise ConfigError("a Population needs at least one segment")
        for s in self.segments:
            if not isinstance(s, ParametricUser) and not _is_llm(s):
                raise ConfigError(
                    f"segment {s!r} is neither a ParametricUser nor an LLMUser "
                    "(recoworld.users.llm)"
                )
        w = self.weights or tuple(1.0 for _ in self.segments)
        if len(w) != len(self.segments) or any(x < 0 for x in w) or sum(w) <= 0:
            raise ConfigError(
                f"weights {w} must be {len(self.segments)} non-negative numbers with a positive sum"
            )
        object.__setattr__(self, "weights", tuple(float(x) / sum(w) for x in w))

    @classmethod
    def of(cls, model: Any) -> Population:
        return model if isinstance(model, Population) else cls((model,))

    @property
    def has_llm(self) -> bool:
        """Whether any segment is an LLM user."""
        return any(_is_llm(s) for s in self.segments)

    @property
    def dynamics(self) -> Any:
        """The model whose rules step every user (parameters are per-user arrays): the first
        segment, or a `MixedUsers` router when LLM and other segments mix."""
        if not self.has_llm or len(self.segments) == 1:
            return self.segments[0]
        from recoworld.users.llm.mixed import MixedUsers  # lazy: LLM users are optional

        return MixedUsers(self.segments)

    def connect(self, **endpoint: Any) -> Population:
        """This population with each LLM segment bound to an endpoint and given its own
        memory (`LLMUser.connect`); ``endpoint``: ``llm``, ``base_url``, ``model``, ``check``."""
        if not self.has_llm:
            return self
        segs = tuple(s.connect(**endpoint) if _is_llm(s) else s for s in self.segments)
        return Population(segs, self.weights)

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
                "segments": [
                    s.as_dict() if _is_llm(s) else {"name": s.name, "params": s.params.as_dict()}
                    for s in self.segments
                ],
                "weights": list(self.weights),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Population:
        data = json.loads(text)
        try:
            segs = tuple(
                _llm_from_dict(s)
                if s.get("kind") == "llm"
                else ParametricUser(UserParams(**s["params"]), name=s.get("name", "custom"))
                for s in data["segments"]
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"population JSON is malformed ({exc}); expected "
                '{"segments": [{"name":..., "params": {...}}], "weights": [...]}'
            ) from exc
        return cls(segs, tuple(data.get("weights", ())))


def make_population(
    users: str | ParametricUser | Population | Sequence[ParametricUser],
) -> Population:
    """A population from a preset name (or ``"llm"``: template LLM personas), a model, a
    population or a list of models."""
    from recoworld.users.presets import preset

    if users == "llm":
        from recoworld.users.llm import LLMUser

        return Population.of(LLMUser())
    if isinstance(users, str):
        return Population.of(preset(users))
    if isinstance(users, (ParametricUser, Population)) or _is_llm(users):
        return Population.of(users)
    return Population(tuple(users))


def _is_llm(model: Any) -> bool:
    return bool(getattr(model, "is_llm_user", False))


def _llm_from_dict(data: dict[str, Any]) -> Any:
    from recoworld.users.llm import LLMUser

    return LLMUser.from_dict(data)
