"""`EnvConfig`: every environment argument, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recoworld.catalog import Catalog
from recoworld.envs.candidates import CandidateMix
from recoworld.envs.rewards import RewardWeights
from recoworld.errors import ConfigError
from recoworld.users.parametric import ParametricUser
from recoworld.users.population import Population
from recoworld.users.presets import PRESETS

ACTION_TYPES = ("indices", "scores")


@dataclass(frozen=True)
class EnvConfig:
    """Arguments shared by the single and the vector environment.

    Attributes:
        users: a preset name (``"engagement"``, ``"novelty_seeking"``, ``"retention"``), a
            `ParametricUser` or a `Population`.
        catalog: a `Catalog`; when None, a synthetic one is drawn from the next five fields.
        n_items, n_topics, dim, n_creators, catalog_seed: the synthetic catalog.
        num_candidates: K candidates offered per step (<= n_items).
        slate_size: items shown per step (<= K).
        action_type: ``"indices"`` (``Discrete``/``MultiDiscrete``) or ``"scores"`` (``Box``).
        multi_session: False: one session per episode; True: the user's sessions until the
            horizon (truncated) or churn (terminated).
        horizon_days: days a multi-session episode spans.
        max_episode_steps: safety cap on steps per episode (truncates), or None.
        rewards: `RewardWeights`.
        candidate_mix: shares of interest, popular and random candidates.
        history: clicked items remembered per user (H).
        llm: the LLM endpoint of LLM users (``users="llm"``, an `LLMUser` or a population with
            LLM segments): a `recoworld.llm.LLMConfig` or a dict of its fields; None: the
            ``RECOWORLD_LLM_BASE_URL`` / ``RECOWORLD_LLM_MODEL`` environment variables.
        llm_base_url, llm_model: override the endpoint's URL and model name.
    """

    users: str | ParametricUser | Population = "engagement"
    catalog: Catalog | None = None
    n_items: int = 2000
    n_topics: int = 20
    dim: int = 32
    n_creators: int = 200
    catalog_seed: int = 0
    num_candidates: int = 50
    slate_size: int = 5
    action_type: str = "indices"
    multi_session: bool = False
    horizon_days: int = 14
    max_episode_steps: int | None = 1000
    rewards: RewardWeights = field(default_factory=RewardWeights)
    candidate_mix: CandidateMix = field(default_factory=CandidateMix)
    history: int = 10
    llm: Any = None
    llm_base_url: str | None = None
    llm_model: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.users, str) and self.users not in PRESETS and self.users != "llm":
            raise ConfigError(
                f"unknown preset {self.users!r}; choose one of {sorted(PRESETS)}, 'llm', "
                "or pass a ParametricUser / LLMUser / Population"
            )
        for name in ("num_candidates", "slate_size", "horizon_days", "history"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}={v!r} must be a positive integer")
        if self.max_episode_steps is not None and (
            not isinstance(self.max_episode_steps, int) or self.max_episode_steps < 1
        ):
            raise ConfigError(
                f"max_episode_steps={self.max_episode_steps!r} must be a positive integer or None"
            )
        n_items = self.catalog.n_items if self.catalog is not None else self.n_items
        if self.catalog is None and (not isinstance(n_items, int) or n_items < 1):
            raise ConfigError(f"n_items={n_items!r} must be a positive integer")
        if self.num_candidates > n_items:
            raise ConfigError(
                f"num_candidates={self.num_candidates} exceeds the catalog's "
                f"{n_items} items; lower num_candidates or use a larger catalog"
            )
        if self.slate_size > self.num_candidates:
            raise ConfigError(
                f"slate_size={self.slate_size} exceeds num_candidates="
                f"{self.num_candidates}; a slate is chosen from the candidates"
            )
        if self.action_type not in ACTION_TYPES:
            raise ConfigError(f"action_type={self.action_type!r}; choose one of {ACTION_TYPES}")
        if not isinstance(self.rewards, RewardWeights):
            raise ConfigError("rewards must be a RewardWeights instance")

    def make_catalog(self) -> Catalog:
        if self.catalog is not None:
            return self.catalog
        return Catalog.synthetic(
            self.n_items,
            n_topics=self.n_topics,
            dim=self.dim,
            n_creators=min(self.n_creators, self.n_items),
            seed=self.catalog_seed,
        )
