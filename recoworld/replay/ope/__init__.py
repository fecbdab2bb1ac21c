"""Off-policy estimators: dataclasses whose fields are hyperparameters; arrays in, number out.

Each estimator answers "what mean reward per logged row would the *target* policy have earned
on the contexts of this log?" from the rewards the *logging* policy earned, the logging
policy's propensities and the target's probabilities of the logged actions. Per-row terms
(``num``, ``den``) make every estimate a ratio ``sum(num) / sum(den)`` (``den = 1`` except for
self-normalised estimators), so one bootstrap serves them all.

Single-item estimators (arrays ``(n,)``; one chosen item per row):

- `IPS`: ``mean(w r)``, ``w = target / logging``; unbiased when the logger gives every action
  the target may take a positive probability.
- `ClippedIPS`: the weight clipped at ``max_weight`` (lower variance, biased toward 0).
- `SNIPS`: ``sum(w r) / sum(w)``; self-normalised (consistent, small bias, lower variance).
- `DoublyRobust`: a reward model's prediction for the target plus the IPS-weighted residual.

Slate estimators (arrays ``(n, L)``; per-slot rewards such as clicks), each equal to `IPS` at
``L == 1`` (tests check this first, as DESIGN.md asks):

- `IndependentIPS`: slot k's reward weighted by slot k's own *marginal* propensity ratio
  (Li et al. 2018); unbiased when slot k's reward depends only on the item at slot k.
- `RewardInteractionIPS`: slot k's reward weighted by the product of the *conditional* ratios
  of slots ``0 .. k`` (McInerney et al. 2020); unbiased when slot k's reward depends only on
  the items at slots ``<= k`` (cascade-like users).
- `SlateIPS`: every slot weighted by the whole slate's ratio; unbiased for any user, and the
  noisiest.
- `PseudoInverse`: Swaminathan et al. 2017 for a *uniformly random* logger of slates of L
  distinct candidates out of K, in closed form (see the class); unbiased when the slate's
  reward is a sum of per-(slot, item) terms.

Propensity conventions. The log's ``propensity`` column (and `Recommendation.propensity`) holds,
per slot, the probability of the shown item at that slot *given the items above it* (the random
recommender writes ``1 / (K - j)``): a conditional. Its product over slots ``0 .. k`` is the
probability of the slate's first ``k + 1`` items, which is what `RewardInteractionIPS` and
`SlateIPS` need. `IndependentIPS` and `PseudoInverse` need *marginals* (the probability that an
item lands at slot k at all; ``1 / K`` for a uniform logger); at ``L == 1`` the two coincide.

Bootstrap confidence intervals (`OffPolicyEstimator.estimate_ci`) resample rows, or whole groups
(e.g. sessions or users: pass ``groups``) with replacement, and take percentiles of the
replicated ratio. A reward model (`DoublyRobust`) is fitted once on the whole log; replicates
do not refit it.
"""

from recoworld.replay.ope.base import (
    OffPolicyEstimator,
    bootstrap_ratios,
    check_propensity,
    check_rewards,
)
from recoworld.replay.ope.plackett_luce import (
    plackett_luce_conditionals,
    plackett_luce_marginals,
    plackett_luce_sample,
)
from recoworld.replay.ope.single import (
    IPS,
    SNIPS,
    ClippedIPS,
    DoublyRobust,
    ItemMeanReward,
    RewardModel,
)
from recoworld.replay.ope.slate import (
    IndependentIPS,
    PseudoInverse,
    RewardInteractionIPS,
    SlateIPS,
    pseudo_inverse_weights,
)

__all__ = [
    "IPS",
    "SNIPS",
    "ClippedIPS",
    "DoublyRobust",
    "IndependentIPS",
    "ItemMeanReward",
    "OffPolicyEstimator",
    "PseudoInverse",
    "RewardInteractionIPS",
    "RewardModel",
    "SlateIPS",
    "bootstrap_ratios",
    "check_propensity",
    "check_rewards",
    "plackett_luce_conditionals",
    "plackett_luce_marginals",
    "plackett_luce_sample",
    "pseudo_inverse_weights",
]
