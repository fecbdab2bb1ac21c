"""Personas of LLM users and where they come from: a list (code, JSON, JSONL), templates, or the
sampled traits of a parametric population.

A `Persona` is profile text plus three traits the prompt states and the fake server reads:
``interests`` (catalog topic names), ``novelty_appetite`` and ``patience`` (both in [0, 1]).
A persona source assigns one persona per user, deterministically from the user's stream key, so a
user's persona does not depend on the batch it is sampled in.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recoworld import rng
from recoworld.catalog import Catalog
from recoworld.errors import ConfigError
from recoworld.users.parametric import ParametricUser
from recoworld.users.params import UserParams
from recoworld.users.state import UserState

PERSONA_FIELDS = ("id", "profile", "interests", "novelty_appetite", "patience")


@dataclass(frozen=True, slots=True)
class Persona:
    """Who an LLM user is.

    Attributes:
        id: a label (logs, prompts).
        profile: one or two sentences in the second person ("You are ...").
        interests: catalog topic names the user likes (at least one).
        novelty_appetite: 0 = wants the familiar, 1 = wants the new.
        patience: 0 = leaves at the first dull slate, 1 = stays long.
    """

    id: str
    profile: str
    interests: tuple[str, ...]
    novelty_appetite: float = 0.3
    patience: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(f"Persona.id={self.id!r} must be a non-empty string")
        if not isinstance(self.profile, str):
            raise ConfigError(f"Persona {self.id!r}: profile={self.profile!r} must be a string")
        interests = self.interests
        if isinstance(interests, str) or not all(isinstance(t, str) for t in interests):
            raise ConfigError(
                f"Persona {self.id!r}: interests={interests!r} must be a list of topic names"
            )
        object.__setattr__(self, "interests", tuple(interests))
        if not self.interests:
            raise ConfigError(f"Persona {self.id!r} has no interests; give at least one topic")
        for name in ("novelty_appetite", "patience"):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
            if not ok or math.isnan(float(v)):
                raise ConfigError(f"Persona {self.id!r}: {name}={v!r} must be a number in [0, 1]")
            object.__setattr__(self, name, float(v))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "profile": self.profile,
            "interests": list(self.interests),
            "novelty_appetite": self.novelty_appetite,
            "patience": self.patience,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Persona:
        """A persona from a mapping with the keys of `PERSONA_FIELDS` (id and profile required)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a persona must be a JSON object, got {data!r}")
        unknown = sorted(set(data) - set(PERSONA_FIELDS))
        missing = [k for k in ("id", "profile", "interests") if k not in data]
        if unknown or missing:
            raise ConfigError(
                f"persona {data.get('id', '?')!r}: missing keys {missing}, unknown keys {unknown}; "
                f"a persona has the keys {list(PERSONA_FIELDS)}"
            )
        return cls(**{**data, "interests": tuple(data["interests"])})


def load_personas(path: str | os.PathLike[str]) -> tuple[Persona, ...]:
    """Personas from a JSON file (a list, or ``{"personas": [...]}``) or JSONL (one per line).

    Raises:
        ConfigError: naming the file, line and what is wrong.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"persona file {str(p)!r} does not exist")
    text = p.read_text()
    if p.suffix == ".jsonl":
        rows: list[Any] = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{p}:{i} is not valid JSON ({exc.msg})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        found = data.get("personas") if isinstance(data, dict) else data
        if not isinstance(found, list):
            raise ConfigError(f'{p} must hold a list of personas or {{"personas": [...]}}')
        rows = found
    if not rows:
        raise ConfigError(f"{p} holds no personas")
    return tuple(Persona.from_dict(r) for r in rows)


def save_personas(personas: Iterable[Persona], path: str | os.PathLike[str]) -> Path:
    """Write personas as JSONL (``.jsonl``) or a JSON list (anything else); returns the path."""
    p = Path(path)
    rows = [x.as_dict() for x in personas]
    if p.suffix == ".jsonl":
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        p.write_text(json.dumps(rows, indent=2) + "\n")
    return p


# ------------------------------------------------------------------------ sources
class PersonaSource(Protocol):
    """Assigns a persona to each of the users ``rows`` of ``state`` (from their keys)."""

    def assign(self, state: UserState, rows: np.ndarray, catalog: Catalog) -> list[Persona]: ...

    def as_dict(self) -> dict[str, Any]: ...


def _check_topics(persona: Persona, catalog: Catalog) -> None:
    names = {str(t).lower() for t in catalog.topic_names}
    bad = [t for t in persona.interests if t.lower() not in names]
    if bad:
        raise ConfigError(
            f"persona {persona.id!r} names topics {bad} that the catalog lacks; its topics are "
            f"{[str(t) for t in catalog.topic_names]}"
        )


def topic_ids(names: Sequence[str], catalog: Catalog) -> np.ndarray:
    """Topic ids of topic names (case-insensitive; unknown names are dropped)."""
    index = {str(t).lower(): i for i, t in enumerate(catalog.topic_names)}
    return np.array([index[n.lower()] for n in names if n.lower() in index], np.int64)


@dataclass(frozen=True)
class PersonaList:
    """A fixed set of personas; each user gets one of them, chosen uniformly by its key.

    Args:
        personas: the personas (e.g. from `load_personas`).
    """

    personas: tuple[Persona, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "personas", tuple(self.personas))
        if not self.personas or not all(isinstance(p, Persona) for p in self.personas):
            raise ConfigError("PersonaList needs at least one Persona")

    def assign(self, state: UserState, rows: np.ndarray, catalog: Catalog) -> list[Persona]:
        for p in self.personas:
            _check_topics(p, catalog)
        u = rng.uniforms(state.key[rows], 0, rng.SAMPLE, 1)[:, 0]
        pick = np.minimum((u * len(self.personas)).astype(np.int64), len(self.personas) - 1)
        return [self.personas[i] for i in pick]

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "list", "personas": [p.as_dict() for p in self.personas]}


DEFAULT_TEMPLATES = (
    "You are a {age}-year-old who spends evenings on {interests}. You {novelty_text} and you "
    "{patience_text}.",
    "You are a busy {age}-year-old professional; in your free minutes you follow {interests}. "
    "You {novelty_text} and you {patience_text}.",
    "You are a {age}-year-old student who loves {interests}. You {novelty_text} and you "
    "{patience_text}.",
)


def _novelty_text(x: float) -> str:
    if x > 0.6:
        return "are always hunting for something new"
    return "like trying new things now and then" if x > 0.3 else "prefer what you already know"


def _patience_text(x: float) -> str:
    if x > 0.6:
        return "happily scroll for a long time"
    return "give a feed a fair chance" if x > 0.3 else "lose interest quickly"


@dataclass(frozen=True)
class PersonaTemplates:
    """Personas rendered from text templates with traits drawn per user from its key.

    Interests: 1 .. ``max_interests`` catalog topics drawn in proportion to topic sizes;
    novelty appetite ~ ``Beta(novelty_a, novelty_b)``; patience uniform in ``patience_range``.
    Placeholders: ``{interests}``, ``{age}``, ``{novelty_text}``, ``{patience_text}``.
    """

    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    max_interests: int = 2
    novelty_a: float = 2.0
    novelty_b: float = 5.0
    patience_range: tuple[float, float] = (0.3, 0.9)

    def __post_init__(self) -> None:
        object.__setattr__(self, "templates", tuple(self.templates))
        object.__setattr__(self, "patience_range", tuple(self.patience_range))
        if not self.templates or not all(isinstance(t, str) for t in self.templates):
            raise ConfigError("PersonaTemplates needs at least one template string")
        for t in self.templates:
            try:
                t.format(interests="", age=0, novelty_text="", patience_text="")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"template {t!r} has an unknown placeholder ({exc}); use {{interests}}, "
                    "{age}, {novelty_text}, {patience_text}"
                ) from None
        if not 1 <= self.max_interests <= 3:
            raise ConfigError(f"max_interests={self.max_interests} must be 1, 2 or 3")
        if self.novelty_a <= 0 or self.novelty_b <= 0:
            raise ConfigError(f"novelty_a={self.novelty_a}, novelty_b={self.novelty_b} must be > 0")
        lo, hi = self.patience_range
        if not 0 <= lo <= hi <= 1:
            raise ConfigError(
                f"patience_range={self.patience_range} must satisfy 0 <= lo <= hi <= 1"
            )

    def assign(self, state: UserState, rows: np.ndarray, catalog: Catalog) -> list[Persona]:
        keys = state.key[rows]
        u = rng.uniforms(keys, 0, rng.SAMPLE, 60)
        share = np.bincount(catalog.topic, minlength=catalog.n_topics) / catalog.n_items
        cdf = np.cumsum(share)
        topics = np.minimum(
            np.searchsorted(cdf, u[:, 1:4] * cdf[-1], side="right"), catalog.n_topics - 1
        )
        k = 1 + np.floor(u[:, 4] * self.max_interests).astype(np.int64)
        nu = rng.beta(
            np.full(rows.size, self.novelty_a), np.full(rows.size, self.novelty_b), u[:, 8:58]
        )
        lo, hi = self.patience_range
        patience = lo + (hi - lo) * u[:, 5]
        age = 18 + np.floor(u[:, 6] * 50).astype(np.int64)
        which = np.minimum(
            (u[:, 7] * len(self.templates)).astype(np.int64), len(self.templates) - 1
        )
        out = []
        for j in range(rows.size):  # text rendering is per user by nature
            names = list(dict.fromkeys(str(catalog.topic_names[t]) for t in topics[j, : k[j]]))
            out.append(
                Persona(
                    id=f"user-{int(keys[j]):016x}",
                    profile=self.templates[which[j]].format(
                        interests=" and ".join(names),
                        age=int(age[j]),
                        novelty_text=_novelty_text(float(nu[j])),
                        patience_text=_patience_text(float(patience[j])),
                    ),
                    interests=tuple(names),
                    novelty_appetite=round(float(np.clip(nu[j], 0.0, 1.0)), 3),
                    patience=round(float(patience[j]), 3),
                )
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "templates",
            "templates": list(self.templates),
            "max_interests": self.max_interests,
            "novelty_a": self.novelty_a,
            "novelty_b": self.novelty_b,
            "patience_range": list(self.patience_range),
        }


MAX_PATIENCE_STEPS = 40.0  # a median session this long (or longer) is patience 1


def patience_of(params: UserParams) -> float:
    """Patience in [0, 1] from a parametric segment's leave rule: the median session length
    under the hazard ``sigmoid(h0 + h_fatigue * step / fatigue_scale)`` at neutral satisfaction,
    over `MAX_PATIENCE_STEPS`."""
    steps = np.arange(1, 400)
    z = params.h0 + params.h_fatigue * steps / params.fatigue_scale
    survive = np.cumprod(1.0 - 1.0 / (1.0 + np.exp(-z)))
    median = float(np.argmax(survive < 0.5) + 1) if (survive < 0.5).any() else 400.0
    return float(np.clip(median / MAX_PATIENCE_STEPS, 0.05, 1.0))


@dataclass(frozen=True)
class ParametricPersonas:
    """Personas rendered from a parametric segment's sampled traits (its own streams).

    Interests: the ``n_interests`` topics whose centroids best match the sampled interest
    vector; novelty appetite: the sampled novelty trait; patience: `patience_of` the segment's
    leave parameters. The rendered users therefore resemble that parametric segment.
    """

    model: ParametricUser = field(default_factory=ParametricUser)
    n_interests: int = 2

    def assign(self, state: UserState, rows: np.ndarray, catalog: Catalog) -> list[Persona]:
        tmp = UserState.empty(
            rows.size,
            catalog.dim,
            catalog.n_topics,
            state.history.shape[1],
            UserParams.stack([self.model.params], np.zeros(rows.size, np.int64)),
        )
        tmp.key[:] = state.key[rows]
        self.model.sample_into(tmp, np.arange(rows.size), catalog)
        score = tmp.theta @ catalog.topic_centroids.T  # (m, n_topics)
        top = np.argsort(-score, axis=1, kind="stable")[:, : self.n_interests]
        patience = patience_of(self.model.params)
        out = []
        for j in range(rows.size):
            names = tuple(str(catalog.topic_names[t]) for t in top[j])
            nu = float(tmp.novelty[j])
            out.append(
                Persona(
                    id=f"{self.model.name}-{int(state.key[rows[j]]):016x}",
                    profile=(
                        f"You enjoy {' and '.join(names)}. You {_novelty_text(nu)} and you "
                        f"{_patience_text(patience)}."
                    ),
                    interests=names,
                    novelty_appetite=round(nu, 3),
                    patience=round(patience, 3),
                )
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "parametric",
            "name": self.model.name,
            "params": self.model.params.as_dict(),
            "n_interests": self.n_interests,
        }


def source_from_dict(data: Any) -> PersonaSource:
    """Inverse of each source's ``as_dict``."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "list":
        return PersonaList(tuple(Persona.from_dict(p) for p in data["personas"]))
    if kind == "templates":
        return PersonaTemplates(
            tuple(data["templates"]),
            int(data["max_interests"]),
            float(data["novelty_a"]),
            float(data["novelty_b"]),
            (float(data["patience_range"][0]), float(data["patience_range"][1])),
        )
    if kind == "parametric":
        model = ParametricUser(UserParams(**data["params"]), name=data.get("name", "custom"))
        return ParametricPersonas(model, int(data.get("n_interests", 2)))
    raise ConfigError(
        f"persona source {data!r} has no known kind; expected 'list', 'templates' or 'parametric'"
    )


def as_source(
    personas: PersonaSource
    | Persona
    | Sequence[Persona]
    | ParametricUser
    | str
    | os.PathLike[str]
    | None,
) -> PersonaSource:
    """A persona source from what users pass: None (default templates), personas, a path to a
    JSON/JSONL file, a `ParametricUser` (rendered from its traits) or a source."""
    if personas is None:
        return PersonaTemplates()
    if isinstance(personas, Persona):
        return PersonaList((personas,))
    if isinstance(personas, ParametricUser):
        return ParametricPersonas(personas)
    if isinstance(personas, (str, os.PathLike)):
        return PersonaList(load_personas(personas))
    if isinstance(personas, (list, tuple)):
        return PersonaList(tuple(personas))
    if hasattr(personas, "assign") and hasattr(personas, "as_dict"):
        return personas
    raise ConfigError(
        f"personas={personas!r}: give Persona objects, a JSON/JSONL path, a ParametricUser, "
        "PersonaTemplates(...) or None"
    )
