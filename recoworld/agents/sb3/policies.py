"""`CandidatePolicy`: an actor-critic whose actor scores every candidate with one shared head.

SB3's default actor maps the features to ``slate_size * K`` logits with one linear layer, so it
learns the value of "candidate k" separately for each position k, and it draws the slots of a
``MultiDiscrete`` slate independently (the same item can fill several slots; the env then shows
it once and the slate is shorter). `CandidatePolicy` keeps SB3's machinery (PPO and A2C
accept it like ``"MultiInputPolicy"``) and changes two things:

- the actor is a per-candidate scorer ``s_k = w · e_k`` over `CandidateExtractor`'s
  embeddings ``e_k``: the same weights for every position, so it generalises across positions
  and candidate orders;
- a slate is drawn from the Plackett-Luce distribution of those scores (`SlateDistribution`):
  slots are filled one after another without replacement, so a slate never repeats an item and
  the deterministic action is simply the top ``slate_size`` candidates.

``Discrete`` actions (``slate_size == 1``) use a categorical over the scores; ``Box`` actions
(``action_type="scores"``) a Gaussian centred on them.
"""

from __future__ import annotations

from typing import Any

from recoworld.agents.sb3.extractor import CandidateExtractor, candidate_embeddings
from recoworld.errors import ConfigError, require

require("stable_baselines3", "rl")

import numpy as np  # noqa: E402
import torch as th  # noqa: E402
from gymnasium import spaces  # noqa: E402
from stable_baselines3.common.distributions import Distribution  # noqa: E402
from stable_baselines3.common.policies import MultiInputActorCriticPolicy  # noqa: E402
from torch import nn  # noqa: E402


class SlateDistribution(Distribution):
    """Plackett-Luce over ``K`` candidates: ``slate_size`` distinct items, in order.

    ``P(a_1..a_L) = prod_l exp(s_{a_l}) / sum_{j not in a_<l} exp(s_j)``. Sampling uses the
    Gumbel top-k trick (top ``L`` of ``s + Gumbel noise`` is an exact PL sample). The entropy
    has no closed form; `entropy` returns the chain-rule estimate
    ``sum_l H(A_l | a_<l)`` along the actions last scored by `log_prob` (the mode otherwise),
    an unbiased estimate when those actions were drawn from the policy.

    Args:
        k: candidates; slate_size: items per slate.
    """

    def __init__(self, k: int, slate_size: int) -> None:
        super().__init__()
        self.k, self.slate_size = k, slate_size
        self.scores: th.Tensor | None = None
        self._entropy: th.Tensor | None = None

    def proba_distribution_net(self, latent_dim: int) -> nn.Module:
        return nn.Linear(latent_dim, self.k)  # replaced by CandidatePolicy's shared scorer

    def proba_distribution(self, scores: th.Tensor) -> SlateDistribution:
        self.scores = scores  # (B, K)
        self._entropy = None
        return self

    def _walk(self, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Log-probability and chain-rule entropy of ``actions`` ``(B, L)``."""
        assert self.scores is not None, "call proba_distribution first"
        s = self.scores
        taken = th.zeros_like(s, dtype=th.bool)
        logp = s.new_zeros(s.shape[0])
        ent = s.new_zeros(s.shape[0])
        for slot in range(self.slate_size):
            logits = s.masked_fill(taken, float("-inf"))
            log_z = th.logsumexp(logits, 1, keepdim=True)
            log_p = logits - log_z
            a = actions[:, slot : slot + 1]
            logp = logp + log_p.gather(1, a).squeeze(1)
            p = log_p.exp()
            ent = ent - (p * log_p.masked_fill(taken, 0.0)).sum(1)
            taken = taken.scatter(1, a, True)
        return logp, ent

    def log_prob(self, actions: th.Tensor) -> th.Tensor:
        a = actions.long().reshape(actions.shape[0], self.slate_size)
        logp, self._entropy = self._walk(a)
        return logp

    def entropy(self) -> th.Tensor:
        if self._entropy is None:
            _, self._entropy = self._walk(self.mode())
        return self._entropy

    def sample(self) -> th.Tensor:
        assert self.scores is not None, "call proba_distribution first"
        u = th.rand_like(self.scores).clamp_(1e-20, 1.0)
        return th.topk(self.scores - th.log(-th.log(u)), self.slate_size, dim=1).indices

    def mode(self) -> th.Tensor:
        assert self.scores is not None, "call proba_distribution first"
        return th.topk(self.scores, self.slate_size, dim=1).indices

    def actions_from_params(self, scores: th.Tensor, deterministic: bool = False) -> th.Tensor:
        self.proba_distribution(scores)
        return self.get_actions(deterministic=deterministic)

    def log_prob_from_params(self, scores: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        actions = self.actions_from_params(scores)
        return actions, self.log_prob(actions)


class CandidateScorer(nn.Module):
    """``(B, features) -> (B, K)`` scores ``w · z_k + b``, one head shared by all candidates.

    ``z_k`` is candidate k's embedding standardised across the K candidates of its row (per
    embedding unit: minus the mean over candidates, over their standard deviation). Only
    differences between candidates matter to a softmax, and right after initialisation they
    are small next to the part of ``e_k`` that the shared user context contributes to every
    candidate (about a tenth of it here), so the head would need weights tens of times larger,
    thousands of Adam steps away, before the policy could prefer anything. Standardising puts
    the differences on a unit scale from the first update.
    """

    def __init__(self, k: int, embed_dim: int, eps: float = 1e-2) -> None:
        super().__init__()
        self.k, self.embed_dim, self.eps = k, embed_dim, eps
        self.head = nn.Linear(embed_dim, 1)

    def forward(self, features: th.Tensor) -> th.Tensor:
        e = candidate_embeddings(features, self.k, self.embed_dim)
        z = (e - e.mean(1, keepdim=True)) / (e.std(1, keepdim=True) + self.eps)
        return self.head(z).squeeze(-1)


class CandidatePolicy(MultiInputActorCriticPolicy):
    """SB3 actor-critic for recoworld: `CandidateExtractor` features, a shared per-candidate
    scorer as the actor, and Plackett-Luce slates (see the module docstring).

    Takes `MultiInputActorCriticPolicy`'s arguments. Defaults: ``features_extractor_class=
    CandidateExtractor`` and ``net_arch=dict(pi=[], vf=[64, 64])``; the actor must read the
    extractor's features directly, so ``net_arch["pi"]`` must stay empty.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space[Any],
        lr_schedule: Any,
        net_arch: dict[str, list[int]] | None = None,
        features_extractor_class: type[CandidateExtractor] = CandidateExtractor,
        **kwargs: Any,
    ) -> None:
        net_arch = {"pi": [], "vf": [64, 64]} if net_arch is None else net_arch
        if not isinstance(net_arch, dict) or net_arch.get("pi"):
            raise ConfigError(
                f"CandidatePolicy net_arch={net_arch!r}: the actor scores candidates straight "
                "from the extractor's features, so use net_arch=dict(pi=[], vf=[...])"
            )
        if not issubclass(features_extractor_class, CandidateExtractor):
            raise ConfigError(
                "CandidatePolicy needs a CandidateExtractor (or subclass) as features extractor, "
                f"got {features_extractor_class.__name__}"
            )
        if isinstance(action_space, spaces.MultiDiscrete) and len(set(action_space.nvec)) != 1:
            raise ConfigError(f"slate action space {action_space} must pick from the same K")
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            features_extractor_class=features_extractor_class,
            **kwargs,
        )

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)  # SB3's networks; the actor head is replaced below
        fx = self.features_extractor
        assert isinstance(fx, CandidateExtractor)
        space = self.action_space
        if isinstance(space, spaces.MultiDiscrete):
            self.action_dist = SlateDistribution(fx.k, int(space.nvec.shape[0]))
        if isinstance(space, spaces.Discrete):
            n_out = int(space.n)
        elif isinstance(space, spaces.MultiDiscrete):
            n_out = int(space.nvec[0])
        else:  # Box scores
            n_out = int(np.prod(space.shape or (0,)))
        if n_out != fx.k:
            raise ConfigError(
                f"action space {space} does not index the observation's {fx.k} candidates"
            )
        self.action_net = CandidateScorer(fx.k, fx.embed_dim)
        if self.ortho_init:
            self.action_net.apply(lambda m: self.init_weights(m, gain=0.01))
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]  # rebuilt: new head
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        if isinstance(self.action_dist, SlateDistribution):
            return self.action_dist.proba_distribution(self.action_net(latent_pi))
        return super()._get_action_dist_from_latent(latent_pi)
