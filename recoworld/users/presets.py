"""Presets: documented parameter sets of the one `ParametricUser` model.

Figures quoted in each docstring were printed by ``benchmarks/user_magnitudes.py --users 1000``
(default env settings: 2,000 items, 20 topics, K=50, slate 5; two-week multi-session episodes;
"popular" is `PopularityRecommender`, "one topic" fills slates from one topic).
"""

from __future__ import annotations

from recoworld.errors import ConfigError
from recoworld.users.parametric import ParametricUser
from recoworld.users.params import UserParams


def engagement(**overrides: float) -> ParametricUser:
    """Engagement users: mostly familiarity-seeking (novelty trait ~ Beta(2, 5)), little
    session-to-session variation (kappa = 10); the default `UserParams`.

    Measured (random / popular / one topic): click rate per step 0.269 / 0.278 / 0.167; median
    session 19 / 19 / 16 steps; next-day return 0.46 / 0.48 / 0.41; two-week churn 0.36 / 0.31 /
    0.44; instructions per 100 steps 0.32 / 0.00 / 3.9. In the first session (Engagement-v0,
    before click history personalises the candidates) popularity beats random on clicks by
    about 24% (0.263 vs 0.212 per step, printed by ``benchmarks/bandits.py``).
    """
    return ParametricUser(UserParams().replace(**overrides), name="engagement")


def novelty_seeking(**overrides: float) -> ParametricUser:
    """Novelty-seeking users (after the hierarchical-RL novelty paper): a static trait spread
    over the population (Beta(2, 2)) and a strong session-level propensity around it
    (kappa = 2), with novelty weighing more (beta_nov = 2.5). Set ``kappa=float('inf')`` for the
    control population whose propensity equals its trait.

    Measured (random / popular / one topic): click rate 0.333 / 0.376 / 0.167; median session
    20 / 21 / 16; next-day return 0.49 / 0.53 / 0.42; two-week churn 0.32 / 0.30 / 0.43.
    """
    base = UserParams(novelty_a=2.0, novelty_b=2.0, kappa=2.0, beta_nov=2.5)
    return ParametricUser(base.replace(**overrides), name="novelty_seeking")


def retention(**overrides: float) -> ParametricUser:
    """Retention users: return gaps that react strongly to satisfaction (kappa_sat = 5) and
    staleness (kappa_stale = 1.0), so "the same thing every day" costs return visits even when
    it earns clicks today; the base gap (return_mean = 1.1 days) keeps next-day return and churn
    in the ranges of USER_MODEL.md.

    Measured (random / popular / one topic): click rate 0.270 / 0.278 / 0.164; median session
    19 / 19 / 16; next-day return 0.55 / 0.59 / 0.48; two-week churn 0.36 / 0.27 / 0.52.
    """
    base = UserParams(kappa_sat=5.0, kappa_stale=1.0, return_mean=1.1)
    return ParametricUser(base.replace(**overrides), name="retention")


PRESETS = {"engagement": engagement, "novelty_seeking": novelty_seeking, "retention": retention}


def preset(name: str, **overrides: float) -> ParametricUser:
    """A preset by name; unknown names list the valid ones."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
    return factory(**overrides)
