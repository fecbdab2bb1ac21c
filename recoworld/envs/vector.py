"""`RecoVectorEnv`: the batched core with ``num_envs`` users, a native `VectorEnv`."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recoworld.envs.core import EnvCore
from recoworld.envs.single import fresh_seed, make_config
from recoworld.errors import ConfigError

_MODES = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}


def vector_args(num_envs: Any, autoreset_mode: str | AutoresetMode) -> AutoresetMode:
    """Validate a vector env's ``num_envs`` and return its `AutoresetMode`."""
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ConfigError(f"num_envs={num_envs!r} must be a positive integer")
    mode = (
        _MODES.get(autoreset_mode, autoreset_mode)
        if isinstance(autoreset_mode, str)
        else (autoreset_mode)
    )
    if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        raise ConfigError(f"autoreset_mode={autoreset_mode!r}; choose 'next_step' or 'same_step'")
    return AutoresetMode(mode)


class RecoVectorEnv(VectorEnv):
    """``num_envs`` simulated users stepped at once by the same core as `RecoEnv`.

    Sub-env ``i`` reset with seed ``s`` behaves exactly like `RecoEnv` reset with seed
    ``s + i`` (checked by `recoworld.testing.check_vector_matches_single`). Finished users are
    replaced by new ones: next-step autoreset by default (the step after an episode ends
    returns the new user's first observation, reward 0, and ignores the action), same-step for
    Stable-Baselines3 (the new user's observation is returned at once and the finished user's
    last observation and info go to ``info["final_obs"]`` / ``info["final_info"]``).

    Args:
        num_envs: users stepped together.
        autoreset_mode: ``"next_step"`` (default) or ``"same_step"`` (or an `AutoresetMode`).
        **kwargs: `EnvConfig` fields, as for `RecoEnv`.

    Info: the keys of `RecoEnv`'s info as arrays with a leading ``num_envs`` axis;
    ``instruction`` is an object array of strings ("" where none).
    """

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: str | AutoresetMode = "next_step",
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        mode = vector_args(num_envs, autoreset_mode)
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        self.config = make_config(kwargs)
        self.num_envs = num_envs
        self.core = self._make_core(num_envs)
        self.catalog = self.core.world.catalog
        self.single_action_space = self.core.world.action_space
        self.single_observation_space = self.core.obs_builder.space()
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.render_mode = render_mode
        self._autoreset = np.zeros(num_envs, bool)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed if isinstance(seed, int) else None)
        n = self.num_envs
        if seed is None:
            seeds = fresh_seed() + np.arange(n) if self.core.state is None else None
        elif isinstance(seed, int):
            seeds = seed + np.arange(n)
        else:
            if len(seed) != n:
                raise ConfigError(f"{len(seed)} seeds for {n} envs; give one per env or an int")
            seeds = np.asarray(seed, dtype=np.int64)
        self.core.reset_rows(np.arange(n), seeds)
        self._autoreset[:] = False
        return self.core.observe(), self.core.reset_info()

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.core.state is None:
            from gymnasium.error import ResetNeeded

            raise ResetNeeded("call reset() before step()")
        mode = self.metadata["autoreset_mode"]
        if mode == AutoresetMode.NEXT_STEP and self._autoreset.any():
            actions = self._safe_actions(actions)
        reward, term, trunc, info = self.core.step(actions)
        done = term | trunc
        if mode == AutoresetMode.NEXT_STEP:
            rows = np.flatnonzero(self._autoreset)
            if rows.size:
                self.core.reset_rows(rows)
                fresh = self.core.reset_info()
                for key, v in info.items():
                    v[rows] = fresh[key][rows]
                reward[rows] = 0.0
                term[rows] = False
                trunc[rows] = False
                done[rows] = False
            self._autoreset = done
        elif done.any():
            rows = np.flatnonzero(done)
            info["final_obs"] = np.full(self.num_envs, None, object)
            info["_final_obs"] = done.copy()
            info["final_info"] = {
                k: v.copy() for k, v in info.items() if k[0] != "_" and k not in ("final_obs",)
            }
            info["_final_info"] = done.copy()
            last = self._final_obs(rows)
            for j, r in enumerate(rows):  # only the finished users
                info["final_obs"][r] = {k: v[j] for k, v in last.items()}
            self.core.reset_rows(rows)
            fresh = self.core.reset_info()
            for key in fresh:
                info[key][rows] = fresh[key][rows]
        return self.core.observe(), reward, term, trunc, info

    def _make_core(self, n: int) -> EnvCore:
        """The batched core behind this env; subclasses with other dynamics override it."""
        return EnvCore(self.config, n)

    def _final_obs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Observations of the finished slots ``rows`` (same-step autoreset's final_obs)."""
        assert self.core.state is not None
        return self.core.obs_builder.build(self.core.state.take(rows), self.core.candidates[rows])

    def _safe_actions(self, actions: Any) -> np.ndarray:
        """Replace the ignored actions of slots about to reset by a valid one."""
        a = np.array(actions, copy=True)
        if a.shape[:1] == (self.num_envs,):
            a[self._autoreset] = 0
        return a
