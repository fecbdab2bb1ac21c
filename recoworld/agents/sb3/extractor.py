"""`CandidateExtractor`: features for "K candidates × features" observations.

Why not SB3's default `CombinedExtractor`? It flattens ``candidates`` ``(K, F)`` into one
vector of ``K * F`` numbers and feeds it to an MLP, so the weights that read candidate 3 are
unrelated to those that read candidate 7: what the network learns about a good item at one
position says nothing about the same item at another, and since candidates arrive in an
arbitrary order each position must be learned separately from the data.

Here one small MLP — the same weights for every candidate — embeds each candidate's features
together with the user and instruction vectors. Each candidate's embedding thus depends on the
candidate and the context but not on its position, and the features handed to SB3's heads keep
the candidates apart:

    features = [e_1, ..., e_K  (K * h, candidate order preserved),
                mean_k e_k     (h, a pooled summary of what is on offer),
                g(user, instruction) (h, a pooled user summary)]

The flattened part keeps the order, so the action head can still tell candidate k's logit
from candidate j's (SB3's default heads are linear maps of these features; `CandidatePolicy`
goes further and scores every candidate with one shared head). The pooled parts let the value
function read the situation without learning K copies of it.

The first layer adds a multiplicative term ``(A x_k) * (B c)`` to the usual ``W [x_k, c]``:
relevance in this world is mostly a dot product between an item's embedding and the user's
taste (the mean embedding of recent clicks, the instruction's topic), which a ReLU MLP over a
concatenation approximates only slowly; the product makes it one layer away (as in
factorisation machines and two-tower rankers).
"""

from __future__ import annotations

from typing import Any

from recoworld.agents.sb3.spaces import describe_space
from recoworld.errors import ConfigError, require

require("torch", "rl")
require("stable_baselines3", "rl")

import numpy as np  # noqa: E402
import torch as th  # noqa: E402
from gymnasium import spaces  # noqa: E402
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402
from torch import nn  # noqa: E402

CANDIDATES, CONTEXT_KEYS = "candidates", ("user", "instruction")


class CandidateExtractor(BaseFeaturesExtractor):
    """A shared per-candidate MLP over ``[candidate_k, user, instruction]``.

    Args:
        observation_space: a `Dict` with ``candidates`` ``(K, F)`` and any of ``user``
            ``(U,)`` and ``instruction`` ``(I,)`` (the recoworld observation).
        hidden: width of the first (interaction) layer.
        embed_dim: ``h``, the per-candidate embedding size.

    Input: ``candidates`` ``(B, K, F)``, ``user`` ``(B, U)``, ``instruction`` ``(B, I)``.
    Output: ``(B, K * h + 2 * h)``: per-candidate embeddings flattened in candidate order, their
    mean, and a user summary; `candidate_embeddings` recovers the ``(B, K, h)`` block.
    """

    def __init__(
        self, observation_space: spaces.Dict, hidden: int = 64, embed_dim: int = 32
    ) -> None:
        if (
            not isinstance(observation_space, spaces.Dict)
            or CANDIDATES not in observation_space.spaces
        ):
            raise ConfigError(
                f"CandidateExtractor needs a Dict observation with a {CANDIDATES!r} key, got "
                f"{describe_space(observation_space)}"
            )
        shape = tuple(observation_space[CANDIDATES].shape or ())
        if len(shape) != 2:
            raise ConfigError(f"{CANDIDATES!r} must be (K, F), got shape {shape}")
        k, f = shape
        self.context_keys = tuple(key for key in CONTEXT_KEYS if key in observation_space.spaces)
        c = sum(int(np.prod(observation_space[key].shape or ())) for key in self.context_keys)
        super().__init__(observation_space, features_dim=k * embed_dim + 2 * embed_dim)
        self.k, self.embed_dim = k, embed_dim
        # first layer on [x_k, c] written as two linears so c is projected once per row,
        # not once per candidate (same function, K times cheaper)
        c = max(c, 1)  # without context, a constant zero stands in for it
        self.cand_in = nn.Linear(f, hidden)
        self.ctx_in = nn.Linear(c, hidden, bias=False)
        self.cand_mul = nn.Linear(f, hidden, bias=False)
        self.ctx_mul = nn.Linear(c, hidden, bias=False)
        self.cand_out = nn.Sequential(nn.ReLU(), nn.Linear(hidden, embed_dim), nn.ReLU())
        self.user_net = nn.Sequential(
            nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, embed_dim), nn.ReLU()
        )

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        x = observations[CANDIDATES]  # (B, K, F)
        b = x.shape[0]
        if self.context_keys:
            ctx = th.cat([observations[key].reshape(b, -1) for key in self.context_keys], 1)
        else:
            ctx = x.new_zeros((b, 1))
        pre = (
            self.cand_in(x)
            + self.ctx_in(ctx)[:, None, :]
            + self.cand_mul(x) * self.ctx_mul(ctx)[:, None, :]
        )
        emb = self.cand_out(pre)  # (B, K, h)
        return th.cat([emb.reshape(b, -1), emb.mean(1), self.user_net(ctx)], 1)


def candidate_embeddings(features: th.Tensor, k: int, embed_dim: int) -> th.Tensor:
    """The ``(B, K, h)`` per-candidate block at the front of `CandidateExtractor` features."""
    return features[:, : k * embed_dim].reshape(features.shape[0], k, embed_dim)


def extractor_kwargs(**overrides: Any) -> dict[str, Any]:
    """``policy_kwargs`` that plug `CandidateExtractor` into any SB3 ``MultiInputPolicy``."""
    kwargs = dict(overrides.pop("features_extractor_kwargs", {}) or {})
    return {
        "features_extractor_class": CandidateExtractor,
        "features_extractor_kwargs": kwargs,
        **overrides,
    }
