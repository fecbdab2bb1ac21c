"""Parameters of the parametric user, with their defaults and meaning (see USER_MODEL.md).

One `UserParams` holds scalars when it configures a segment, and ``(n,)`` float32 arrays when it
holds the per-user values of a sampled population (`UserParams.take_rows`); the dynamics use
either form unchanged, so a mixture of segments is stepped in one batch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from recoworld.errors import ConfigError


@dataclass(frozen=True)
class UserParams:
    """Every rule's parameters. Defaults give the engagement magnitudes of USER_MODEL.md.

    Utility of item i at slot k (logit scale):
        beta_aff: weight of interest affinity ``theta . e_i`` (3.0).
        beta_q: weight of item quality (3.0).
        beta_nov: weight of perceived novelty, signed by ``2 p_us - 1`` (1.0).
        beta_bore: penalty per unit of exposure to the item's topic (2.0).
        beta_rep: penalty for an item already in the recent history (2.0).
        beta_sim: penalty per unit of mean similarity to the rest of the slate (1.0).
        beta_pos: position bias, ``- beta_pos * log(1 + k)`` (0.3).
        u0: utility of not clicking (4.8); sets the click rate.
        tau: choice temperature (1.0).
    Engagement after a click:
        alpha0, alpha1, watch_noise: watch fraction ``sigmoid(alpha0 + alpha1 (U - u0) + noise)``.
        gamma0, gamma1: like probability ``sigmoid(gamma0 + gamma1 U)``.
    State updates:
        eta: interest drift toward a clicked item (0.05); eta0: pull back to the anchor (0.02).
        rho: exposure decay per step (0.85); alpha_exp: share of exposure from clicks (0.7).
        exposure_recovery_days: exposure decays by ``exp(-days / this)`` between sessions (1.0).
        lam: satisfaction averaging rate (0.15); expectation: mean of ``E_u`` (0.1);
        expectation_sd: spread of ``E_u`` over users (0.03).
    Leaving:
        h0, h_fatigue, fatigue_scale, h_sat, h_ignored: hazard
        ``sigmoid(h0 + h_fatigue * step / fatigue_scale - h_sat * S + h_ignored * ignored)``.
    Instructions:
        i0, i_sat, i_bore, instruct_threshold: emit when ``sigmoid(i0 - i_sat S + i_bore max x)``
        exceeds the threshold and no instruction is active; instruct_steps: how long it stays
        active; bore_level: exposure above which the cause is "too much of a topic";
        low_affinity: mean slate affinity below which the cause is "not my thing".
    Sessions and retention:
        return_mean: base mean gap in days (``mu``); return_mean_sd: log-normal spread over users;
        kappa_sat: how much satisfaction shortens the gap; kappa_stale: how much staleness
        lengthens it; max_gap: a gap longer than this many days churns the user;
        churn0, churn_sat: churn probability ``sigmoid(churn0 - churn_sat * S)`` at a session end.
    Novelty and interests:
        novelty_a, novelty_b: ``Beta`` prior of the static novelty trait; kappa: concentration of
        the session propensity ``Beta(kappa nu, kappa (1 - nu))`` (``inf``: propensity = trait);
        n_interests: maximum number of interest topics (1 .. 3); interest_noise: scatter of the
        interest vector around its topic centres.
    """

    beta_aff: Any = 3.0
    beta_q: Any = 3.0
    beta_nov: Any = 1.0
    beta_bore: Any = 2.0
    beta_rep: Any = 2.0
    beta_sim: Any = 1.0
    beta_pos: Any = 0.3
    u0: Any = 4.8
    tau: Any = 1.0
    alpha0: Any = 0.0
    alpha1: Any = 0.8
    watch_noise: Any = 0.5
    gamma0: Any = -3.0
    gamma1: Any = 0.8
    eta: Any = 0.05
    eta0: Any = 0.02
    rho: Any = 0.85
    alpha_exp: Any = 0.7
    exposure_recovery_days: Any = 1.0
    lam: Any = 0.15
    expectation: Any = 0.1
    expectation_sd: Any = 0.03
    h0: Any = -4.2
    h_fatigue: Any = 2.0
    fatigue_scale: Any = 30.0
    h_sat: Any = 6.0
    h_ignored: Any = 0.8
    i0: Any = -3.0
    i_sat: Any = 8.0
    i_bore: Any = 6.0
    instruct_threshold: Any = 0.5
    instruct_steps: Any = 5.0
    bore_level: Any = 0.35
    low_affinity: Any = 0.2
    return_mean: Any = 1.8
    return_mean_sd: Any = 0.3
    kappa_sat: Any = 3.0
    kappa_stale: Any = 0.5
    max_gap: Any = 7.0
    churn0: Any = -4.5
    churn_sat: Any = 6.0
    novelty_a: Any = 2.0
    novelty_b: Any = 5.0
    kappa: Any = 10.0
    n_interests: Any = 2.0
    interest_noise: Any = 0.4

    def __post_init__(self) -> None:
        if isinstance(self.beta_aff, np.ndarray):
            return  # per-user arrays (all fields at once) were validated as scalars before
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or math.isnan(float(v)):
                raise ConfigError(f"UserParams.{f.name}={v!r} must be a number")
        positive = (
            "tau",
            "fatigue_scale",
            "return_mean",
            "exposure_recovery_days",
            "kappa",
            "novelty_a",
            "novelty_b",
            "instruct_steps",
            "max_gap",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"UserParams.{name}={getattr(self, name)} must be > 0")
        unit = ("rho", "alpha_exp", "lam", "instruct_threshold")
        for name in unit:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(
                    f"UserParams.{name}={getattr(self, name)} is a probability or "
                    "share and must lie in [0, 1]"
                )
        nonneg = (
            "beta_rep",
            "beta_bore",
            "beta_sim",
            "beta_pos",
            "watch_noise",
            "eta",
            "eta0",
            "expectation_sd",
            "return_mean_sd",
            "interest_noise",
            "kappa_sat",
            "kappa_stale",
        )
        for name in nonneg:
            if getattr(self, name) < 0:
                raise ConfigError(f"UserParams.{name}={getattr(self, name)} must be >= 0")
        if not 1 <= self.n_interests <= 3:
            raise ConfigError(f"UserParams.n_interests={self.n_interests} must be 1, 2 or 3")

    def replace(self, **changes: float) -> UserParams:
        """A copy with some parameters changed (validated)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(
                f"unknown user parameters {sorted(unknown)}; valid names: "
                f"{[f.name for f in fields(self)]}"
            )
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @staticmethod
    def stack(segments: list[UserParams], segment_of_user: np.ndarray) -> UserParams:
        """Per-user arrays ``(n,)`` float32: row u gets segment ``segment_of_user[u]``'s values."""
        values = {
            f.name: np.asarray([float(getattr(s, f.name)) for s in segments], dtype=np.float32)[
                segment_of_user
            ]
            for f in fields(UserParams)
        }
        return UserParams(**values)

    def take_rows(self, idx: np.ndarray | slice) -> UserParams:
        """Rows ``idx`` of per-user arrays."""
        return UserParams(**{name: getattr(self, name)[idx] for name in PARAM_NAMES})

    def put_rows(self, idx: np.ndarray, other: UserParams) -> None:
        """Write ``other``'s rows into rows ``idx`` (in place; arrays only)."""
        for name in PARAM_NAMES:
            getattr(self, name)[idx] = getattr(other, name)


PARAM_NAMES = tuple(f.name for f in fields(UserParams))
