"""Calibrate a parametric population from logged sessions, and report its fidelity.

`calibrate` fits, from a log in the schema of `recoworld.replay.schema`, the parts of the
parametric user (USER_MODEL.md) and of the catalog that a log identifies, and keeps the other
user parameters at a base preset's values (``base``, default `engagement`):

1. **Item embeddings** by matrix factorisation of the users' click profiles (`factorise_clicks`:
   a sparse randomised truncated SVD, PureSVD-style; numpy only): items clicked by the same
   users point the same way. **Topics** by spherical k-means over them.
2. **The rest of the catalog**: popularity such that the simulator's candidate generator
   reproduces the logged candidate frequencies (`invert_popularity`); length from
   ``watch_time / watch_fraction`` of clicked items; quality from step 3.
3. **User interests, choice temperature and no-click utility** by maximum likelihood of the
   multinomial logit over the logged slates (one click or none per step), with the base's
   utility weights applied to the fitted catalog and to the user state replayed from the log
   (`replay_state`: click history, topic exposure, slate similarity, position). A user's
   interest is integrated over M draws of the population's interest prior (`MixedLogit`, fitted
   by EM): plugging in a noisy per-user estimate instead biases ``tau`` and ``u0``, because the
   simulator draws its users from the prior. Item effects first (they become quality), then
   ``(tau, u0)`` by 2-D Newton.
4. **Watch fraction** (``alpha0``, ``alpha1``, ``watch_noise``) by least squares of
   ``logit(w)`` on the clicked item's posterior-mean ``U - u0`` (the maximum likelihood of the
   model's Gaussian noise).
5. **Leave hazard** (``h0``, ``h_fatigue``, ``h_sat``) by maximum likelihood of the logged
   session lengths: a discrete-time hazard, logistic in the step and in the satisfaction
   replayed from the logged watch fractions (Newton / IRLS).
6. **Return gaps and churn** (``return_mean``, ``churn0``) by maximum likelihood of the logged
   gaps (``1 + Geometric`` with mean ``return_mean * exp(-kappa_sat S + kappa_stale z)``, the
   base's log-normal spread of each user's ``return_mean`` integrated out per user by
   Gauss-Hermite quadrature) and churns (a gap past ``max_gap`` or the satisfaction-driven
   churn draw).

Where a log does not identify the model, the base's values stay: the utility weights
(``beta_*``), the interest prior (``n_interests``, ``interest_noise``; topics are the fitted
ones), satisfaction's ``lam`` and ``expectation``, fatigue scale, staleness and instruction
rules; the hidden session propensity enters the novelty term at its population mean. The
result is a `Population` and a `Catalog` for ``simulate(**result.simulate_kwargs(), ...)`` or
``RecoVectorEnv(users=result.population, catalog=result.catalog, ...)``.

`fidelity_report` compares a log with a simulated one: the held-out click-prediction AUC of the
fit, and the logged vs simulated distributions of per-session CTR, session length and return
gaps with two-sample Kolmogorov-Smirnov statistics, as a table and a PNG.
"""

from recoworld.replay.calibration.fidelity import (
    FidelityReport,
    fidelity_report,
    ks_statistic,
    session_statistics,
)
from recoworld.replay.calibration.files import load_catalog, save_catalog, write_atomically
from recoworld.replay.calibration.fit import CalibrationResult, calibrate, click_auc, item_lengths
from recoworld.replay.calibration.logs import LogArrays, factorise_clicks, spherical_kmeans
from recoworld.replay.calibration.replay_state import Replay, invert_popularity, replay_state

__all__ = [
    "CalibrationResult",
    "FidelityReport",
    "LogArrays",
    "Replay",
    "calibrate",
    "click_auc",
    "factorise_clicks",
    "fidelity_report",
    "invert_popularity",
    "item_lengths",
    "ks_statistic",
    "load_catalog",
    "replay_state",
    "save_catalog",
    "session_statistics",
    "spherical_kmeans",
    "write_atomically",
]
