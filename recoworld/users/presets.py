"""Presets: documented parameter sets of the one `ParametricUser` model.

Figures quoted in each docstring are measured by ``benchmarks/user_magnitudes.py`` (random
recommender, default env settings: 2,000 items, 20 topics, K=50, slate 5).
"""

from __future__ import annotations

from recoworld.errors import ConfigError
from recoworld.users.params import UserParams
from recoworld.users.parametric import ParametricUser


def engagement(**overrides: float) -> ParametricUser:
    """Engagement users: mostly familiarity-seeking (novelty trait ~ Beta(2, 5)), little
    session-to-session variation (kappa = 10); the default `UserParams`."""
    return ParametricUser(UserParams().replace(**overrides), name="engagement")


def novelty_seeking(**overrides: float) -> ParametricUser:
    """Novelty-seeking users (after the hierarchical-RL novelty paper): a static trait spread
    over the population (Beta(2, 2)) and a strong session-level propensity around it
    (kappa = 2), with novelty weighing more (beta_nov = 2.5). Set ``kappa=float('inf')`` for the
    control population whose propensity equals its trait."""
    base = UserParams(novelty_a=2.0, novelty_b=2.0, kappa=2.0, beta_nov=2.5)
    return ParametricUser(base.replace(**overrides), name="novelty_seeking")


def retention(**overrides: float) -> ParametricUser:
    """Retention users: return gaps that react strongly to satisfaction (kappa_sat = 5) and
    staleness (kappa_stale = 1.0), so "the same thing every day" costs return visits even when
    it earns clicks today."""
    base = UserParams(kappa_sat=5.0, kappa_stale=1.0)
    return ParametricUser(base.replace(**overrides), name="retention")


PRESETS = {"engagement": engagement, "novelty_seeking": novelty_seeking, "retention": retention}


def preset(name: str, **overrides: float) -> ParametricUser:
    """A preset by name; unknown names list the valid ones."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
    return factory(**overrides)
