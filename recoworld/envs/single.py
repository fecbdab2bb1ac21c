"""`RecoEnv`: the batched core with one user, as a `gymnasium.Env`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from recoworld.envs.config import EnvConfig
from recoworld.envs.core import EnvCore
from recoworld.envs.rewards import RewardWeights


def make_config(kwargs: dict[str, Any]) -> EnvConfig:
    """`EnvConfig` from keyword arguments; ``rewards`` may be a dict of weights."""
    if isinstance(kwargs.get("rewards"), dict):
        kwargs = {**kwargs, "rewards": RewardWeights(**kwargs["rewards"])}
    return EnvConfig(**kwargs)


def fresh_seed() -> int:
    """A seed from OS entropy, for ``reset(seed=None)`` before any seed was given."""
    return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))


class RecoEnv(gym.Env[dict[str, np.ndarray], Any]):
    """A recommender meets one simulated user, step after step, session after session.

    ## Description
    Each step the agent picks a slate of ``slate_size`` items from ``num_candidates`` candidates
    drawn for this user (interest-based retrieval from its click history, popular and random
    items). The parametric user (USER_MODEL.md) clicks at most one item, watches part of it,
    may like it, may leave, and may speak up with an instruction ("less cooking, please").

    ## Action Space
    ``MultiDiscrete([K] * slate_size)`` (``Discrete(K)`` when ``slate_size == 1``): indices into
    the current candidates (``info["candidate_ids"]``). With ``action_type="scores"``,
    ``Box(-1, 1, (K,))``: the top-``slate_size`` candidates by score are shown. A repeated index
    shows the item once (``info["repeats"]`` counts the repeats).

    ## Observation Space
    ``Dict(candidates=Box(K, dim + 5), user=Box(9 + n_topics + dim), instruction=Box(4 + 2 dim
    + 1))``, float32 and bounded, holding only what a real system could see (see
    `recoworld.envs.observation`).

    ## Rewards
    ``clicks + watch time / median item length`` (`RewardWeights`), plus a return bonus at each
    session's end where ``rewards.return_bonus > 0`` (Retention-v0).

    ## Starting State
    A new user sampled from the population (its own random stream keyed by the seed and the
    episode number) at the start of its first session, on day 0.

    ## Episode End
    Single-session envs: terminated when the user leaves. Multi-session envs: terminated when the
    user churns, truncated when its next session falls past ``horizon_days``. Every env truncates
    at ``max_episode_steps`` (a safety cap).

    ## Arguments
    All fields of `EnvConfig` as keyword arguments, e.g.
    ``gym.make("recoworld:recoworld/Retention-v0", slate_size=3, num_candidates=20)``.

    ## Version History
    - v0: initial release.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("recoworld:recoworld/Engagement-v0", n_items=200, num_candidates=10)
        >>> obs, info = env.reset(seed=0)
        >>> obs["candidates"].shape
        (10, 37)
        >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.config = make_config(kwargs)
        self.core = self._make_core(1)
        self.catalog = self.core.world.catalog
        self.action_space = self.core.world.action_space
        self.observation_space = self.core.obs_builder.space()  # type: ignore[assignment]
        self.render_mode = render_mode
        self._needs_reset = True
        self._last_info: dict[str, Any] = {}

    def _make_core(self, n: int) -> EnvCore:
        """The batched core behind this env; subclasses with other dynamics override it."""
        return EnvCore(self.config, n)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        first = self.core.state is None
        if seed is not None or first:
            s = seed if seed is not None else fresh_seed()
            self.core.reset_rows(np.arange(1), np.array([s]))
        else:
            self.core.reset_rows(np.arange(1))
        self._needs_reset = False
        self._last_info = _row(self.core.reset_info())
        return _row(self.core.observe()), self._last_info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise ResetNeeded("the episode has ended or not started; call reset() before step()")
        reward, term, trunc, info = self.core.step(np.asarray(action)[None])
        self._needs_reset = bool(term[0] or trunc[0])
        self._last_info = _row(info)
        obs = _row(self.core.observe())
        return obs, float(reward[0]), bool(term[0]), bool(trunc[0]), self._last_info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or not self._last_info:
            return None
        i = self._last_info
        titles = [str(self.catalog.title[x]) if x >= 0 else "-" for x in i["slate_ids"]]
        return (
            f"user {i['user_id']} session {i['session']} day {i['day']}: "
            f"{titles} clicked={i['clicked']} {i['instruction']}"
        )


def _row(batch: dict[str, Any]) -> dict[str, Any]:
    """Row 0 of a batched dict: arrays for per-slot fields, Python scalars otherwise."""
    out: dict[str, Any] = {}
    for k, v in batch.items():
        x = v[0]
        out[k] = x.item() if isinstance(x, np.generic) else x
    return out
