"""Networks of `HierarchicalNoveltyAgent`: the novelty-level policy and the candidate scorer.

The low level reuses the torso of the SB3 PPO policy (`CandidateExtractor`: one MLP shared by
all candidates over ``[candidate_k, user, instruction]``) and its shared scoring head
(`CandidateScorer`), so "flat PPO" and the hierarchy differ only in the level input and the
level's score shift, never in network size of the part that ranks items.
"""

from __future__ import annotations

from recoworld.errors import require

require("torch", "rl")
require("stable_baselines3", "rl")

import numpy as np  # noqa: E402
import torch as th  # noqa: E402
from gymnasium import spaces  # noqa: E402
from torch import nn  # noqa: E402

from recoworld.agents.sb3.extractor import CandidateExtractor  # noqa: E402
from recoworld.agents.sb3.policies import CandidateScorer  # noqa: E402


def _mlp(n_in: int, hidden: int, n_out: int, gain: float) -> nn.Sequential:
    net = nn.Sequential(
        nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
        nn.Linear(hidden, n_out),
    )  # fmt: skip
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight, np.sqrt(2))
            nn.init.zeros_(m.bias)
    last = net[-1]
    assert isinstance(last, nn.Linear)
    nn.init.orthogonal_(last.weight, gain)
    return net


class HighLevel(nn.Module):
    """Novelty-level actor-critic over the user's observable history.

    Input: ``user`` ``(B, U)`` (step in session, day, session, recent clicks and skips, novel
    and familiar clicks this session and in the lifetime, clicked-topic mix, mean clicked
    embedding). Output: level logits ``(B, n_levels)`` and value ``(B,)``.
    """

    def __init__(self, user_dim: int, n_levels: int, hidden: int) -> None:
        super().__init__()
        self.actor = _mlp(user_dim, hidden, n_levels, 0.01)
        self.critic = _mlp(user_dim, hidden, 1, 1.0)

    def forward(self, user: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.actor(user), self.critic(user).squeeze(-1)


class LowLevel(nn.Module):
    """Candidate scorer conditioned on a novelty level (or flat, with ``n_levels == 0``).

    Scores ``s_k = head(torso([candidate_k, user, level one-hot, instruction])) + bias *
    level_value * topic_new_k``: the level is an input of the torso, and it also shifts the
    scores of candidates from topics new to the user by ``bias * level_value`` with
    ``level_value`` evenly spaced in ``[-1, 1]`` (level 0 prefers the familiar, the last level
    the new). The shift gives each level its meaning from the first update, so the high level
    can learn *when* to ask for novelty while the low level learns *what* to show.

    Args:
        obs_space: the env's single observation space (``candidates`` ``(K, F)``, ``user``,
            ``instruction``).
        n_levels: novelty levels (0: flat, no level input).
        new_col: the candidates' "topic new to the user" column.
        bias: strength of the level's score shift.
        hidden, embed_dim: torso sizes (as `CandidateExtractor`).
    """

    def __init__(
        self,
        obs_space: spaces.Dict,
        n_levels: int,
        new_col: int,
        bias: float,
        hidden: int,
        embed_dim: int,
    ) -> None:
        super().__init__()
        user = obs_space["user"]
        assert user.shape is not None
        sub = dict(obs_space.spaces)
        if n_levels:  # the torso reads the level as extra user features
            u = user.shape[0] + n_levels
            sub["user"] = spaces.Box(-1.0, 1.0, (u,), np.float32)
        self.torso = CandidateExtractor(spaces.Dict(sub), hidden=hidden, embed_dim=embed_dim)
        self.k, self.n_levels, self.new_col, self.bias = self.torso.k, n_levels, new_col, bias
        self.scorer = CandidateScorer(self.k, embed_dim)
        nn.init.orthogonal_(self.scorer.head.weight, 0.01)
        nn.init.zeros_(self.scorer.head.bias)
        self.critic = _mlp(self.torso.features_dim, 64, 1, 1.0)
        values = np.linspace(-1.0, 1.0, n_levels) if n_levels > 1 else np.zeros(n_levels)
        self.level_values: th.Tensor
        self.register_buffer("level_values", th.as_tensor(values, dtype=th.float32))

    def forward(
        self, obs: dict[str, th.Tensor], level: th.Tensor | None
    ) -> tuple[th.Tensor, th.Tensor]:
        """Scores ``(B, K)`` and value ``(B,)``; ``level`` ``(B,)`` long (None when flat)."""
        cand = obs["candidates"]
        ctx = {"candidates": cand, "user": obs["user"], "instruction": obs["instruction"]}
        if self.n_levels:
            assert level is not None
            onehot = nn.functional.one_hot(level, self.n_levels).to(cand.dtype)
            ctx["user"] = th.cat([obs["user"], onehot], 1)
        feats = self.torso(ctx)
        scores = self.scorer(feats)
        if self.n_levels:
            shift = self.bias * self.level_values[level]
            scores = scores + shift[:, None] * cand[:, :, self.new_col]
        return scores, self.critic(feats).squeeze(-1)


def slate_log_prob(scores: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Plackett-Luce log-probability of slates, per-slot log-probabilities and entropy.

    Args:
        scores: ``(B, K)``; actions: ``(B, L)`` long candidate indices (distinct per row).

    Returns:
        ``(log p(slate) (B,), log p(slot j | slots above) (B, L), chain-rule entropy along the
        slate (B,))``.
    """
    taken = th.zeros_like(scores, dtype=th.bool)
    slots, ent = [], scores.new_zeros(scores.shape[0])
    for j in range(actions.shape[1]):
        log_p = th.log_softmax(scores.masked_fill(taken, float("-inf")), 1)
        a = actions[:, j : j + 1]
        slots.append(log_p.gather(1, a).squeeze(1))
        ent = ent - (log_p.exp() * log_p.masked_fill(taken, 0.0)).sum(1)
        taken = taken.scatter(1, a, True)
    per_slot = th.stack(slots, 1)
    return per_slot.sum(1), per_slot, ent


def sample_slate(
    scores: th.Tensor, slate_size: int, generator: th.Generator | None, deterministic: bool
) -> th.Tensor:
    """``(B, L)`` slates: the top ``L`` scores, or a Plackett-Luce sample (Gumbel top-k)."""
    if deterministic:
        return th.topk(scores, slate_size, dim=1).indices
    u = th.rand(scores.shape, generator=generator).clamp_(1e-20, 1.0).to(scores.device)
    return th.topk(scores - th.log(-th.log(u)), slate_size, dim=1).indices
