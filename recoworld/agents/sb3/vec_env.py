"""`to_sb3_vec_env`: the native `RecoVectorEnv` seen through Stable-Baselines3's `VecEnv` API.

SB3 expects what its `DummyVecEnv` gives: ``reset() -> obs``; ``step_wait() -> (obs, rewards,
dones, infos)`` with one info dict per env, a finished env's last observation in
``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` set when the episode
was cut by a time limit rather than ended by the MDP (so on-policy algorithms bootstrap from the
value of that last observation). The native env in same-step autoreset mode already replaces
finished users at once and keeps their last observation and info in ``info["final_obs"]`` /
``info["final_info"]``; this adapter only re-shapes those batched arrays into SB3's per-env form,
so all users are still stepped in one numpy batch.

Rewards are checked on the way out: a NaN or infinite reward raises `NonFiniteRewardError`
naming the step and the user, so it never reaches a learner's buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recoworld.errors import ConfigError, RecoworldError, require

require("stable_baselines3", "rl")

import gymnasium as gym  # noqa: E402
from gymnasium.vector import AutoresetMode, VectorEnv  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv  # noqa: E402
from stable_baselines3.common.vec_env.base_vec_env import (  # noqa: E402
    VecEnvIndices,
    VecEnvStepReturn,
)

DEFAULT_N_ENVS = 8


class NonFiniteRewardError(RecoworldError, FloatingPointError):
    """The environment produced a NaN or infinite reward."""


class RecoSB3VecEnv(VecEnv):
    """A gymnasium `VectorEnv` in same-step autoreset mode as an SB3 `VecEnv`.

    All ``num_envs`` slots live in one native env (one numpy batch). Attributes and methods are
    therefore shared: `get_attr` returns the native env's attribute once per requested slot,
    `set_attr` and `env_method` act on the native env once (for vector envs that keep one env
    object per slot, such as gymnasium's `SyncVectorEnv`, they are forwarded per slot).

    Args:
        env: a gymnasium vector env made with ``autoreset_mode="same_step"``, e.g.
            ``RecoVectorEnv(8, autoreset_mode="same_step")``.

    Attributes:
        venv: the wrapped vector env.
        total_steps: vector steps taken since construction (named by reward errors).
        reset_infos: per-slot info of the latest reset (SB3 convention); for a slot that
            finished at the last step, the new user's first info.
    """

    def __init__(self, env: VectorEnv) -> None:
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.SAME_STEP:
            raise ConfigError(
                f"the vector env uses autoreset mode {mode}; Stable-Baselines3 needs same-step "
                "autoreset: make it with autoreset_mode='same_step'"
            )
        self.venv: Any = env  # typed loosely: Sync/Async vector envs add get_attr, call, envs
        self.total_steps = 0
        self._actions: np.ndarray | None = None
        self._per_slot = hasattr(env, "envs")  # Sync/AsyncVectorEnv: one env object per slot
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    # --- core API -------------------------------------------------------------------------
    def reset(self) -> dict[str, np.ndarray]:
        """Reset every slot, with the seeds set by `seed` (used once, as in SB3)."""
        seeds = self._seeds
        seed: list[int] | None = None
        if any(s is not None for s in seeds):
            if any(s is None for s in seeds):
                raise ConfigError(f"seeds {seeds} mix None and integers; seed all slots or none")
            seed = [int(s) for s in seeds if s is not None]
        options = self._options[0] if self._options and self._options[0] else None
        obs, info = self.venv.reset(seed=seed, options=options)
        self.reset_infos = _split_info(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return dict(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        actions, self._actions = self._actions, None
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        self.total_steps += 1
        reward = np.asarray(reward, dtype=np.float32)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        dones = terminated | truncated
        if not np.isfinite(reward).all():
            self._raise_non_finite(reward, dones, info)
        infos = _split_info(info, self.num_envs)
        if dones.any():
            final_obs = info["final_obs"]
            final_info = info.get("final_info", {})
            for i in np.flatnonzero(dones).tolist():
                self.reset_infos[i] = infos[i]  # the new user's first info
                infos[i] = {k: _row(v, i) for k, v in final_info.items() if k[0] != "_"}
                infos[i]["terminal_observation"] = final_obs[i]
        for i in range(self.num_envs):
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return dict(obs), reward.copy(), dones, infos

    def _raise_non_finite(
        self, reward: np.ndarray, dones: np.ndarray, info: dict[str, Any]
    ) -> None:
        bad = np.flatnonzero(~np.isfinite(reward))
        slot = int(bad[0])
        who = f"user slot {slot}"
        # a user that finished at this step was replaced: its ids are in final_info
        source = info.get("final_info", {}) if dones[slot] else info
        if "user_id" in source:
            who += f" (user_id {_row(source['user_id'], slot)}"
            if "session" in source:
                who += f", session {_row(source['session'], slot)}"
            who += ")"
        raise NonFiniteRewardError(
            f"reward {reward[slot]} at step {self.total_steps} for {who} is not finite "
            f"({bad.size} of {self.num_envs} slots); check the reward weights and any reward "
            "wrapper: non-finite rewards would corrupt the learner"
        )

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed slot ``i`` with ``seed + i`` at the next `reset` (a random base when None)."""
        return super().seed(seed)

    def close(self) -> None:
        self.venv.close()

    # --- attributes and methods -------------------------------------------------------------
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        idx = self._indices(indices)
        if self._per_slot:
            values = self.venv.get_attr(attr_name)
            return [values[i] for i in idx]
        value = getattr(self.venv, attr_name)  # AttributeError if missing, as SB3 expects
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        idx = self._indices(indices)
        if self._per_slot:
            values = list(self.venv.get_attr(attr_name))
            for i in idx:
                values[i] = value
            self.venv.set_attr(attr_name, values)
            return
        if len(idx) != self.num_envs:
            raise ConfigError(
                f"set_attr({attr_name!r}) on slots {idx}: all {self.num_envs} slots share one "
                "native env, so an attribute can only be set for all of them (indices=None)"
            )
        setattr(self.venv, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Call ``method_name`` and return its result once per requested slot.

        For the native env (one object for all slots) the method is called once.
        """
        idx = self._indices(indices)
        if self._per_slot:
            results = self.venv.call(method_name, *method_args, **method_kwargs)
            return [results[i] for i in idx]
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in idx]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        """Slots of a native vector env are never wrapped by per-env gymnasium wrappers."""
        idx = self._indices(indices)
        if self._per_slot:
            from stable_baselines3.common.env_util import is_wrapped

            return [is_wrapped(self.venv.envs[i], wrapper_class) for i in idx]
        return [False for _ in idx]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        idx = [int(i) for i in self._get_indices(indices)]
        for i in idx:
            if not 0 <= i < self.num_envs:
                raise ConfigError(f"env index {i} outside [0, {self.num_envs})")
        return idx

    @property
    def catalog(self) -> Any:
        """The native env's catalog (for catalog-aware callbacks and recommenders)."""
        return getattr(self.venv, "catalog", None)


def _row(value: Any, i: int) -> Any:
    """Slot ``i`` of a batched info value: Python scalars for 0-d entries, arrays otherwise."""
    x = value[i]
    return x.item() if isinstance(x, np.generic) else x


def _split_info(info: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Batched vector-env info -> one dict per slot, dropping gymnasium's ``_key`` masks and
    the ``final_*`` entries (the adapter turns those into ``terminal_observation``).

    1-D numeric arrays become Python scalars (one ``tolist`` per key, not one index per slot),
    wider arrays rows of the array.
    """
    keys: list[str] = []
    columns: list[list[Any]] = []
    masked: list[tuple[str, Any, Any]] = []
    for k, v in info.items():
        if k[0] == "_" or k in ("final_obs", "final_info"):
            continue
        mask = info.get("_" + k)
        if isinstance(v, dict) or (mask is not None and not np.all(mask)):
            masked.append((k, v, mask))  # nested dicts, partially filled keys: slow path
            continue
        keys.append(k)
        if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype != object:
            columns.append(v.tolist())
        else:
            columns.append(list(v))
    if keys:
        out = [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]
    else:
        out = [{} for _ in range(n)]
    for k, v, mask in masked:
        parts = _split_info(v, n) if isinstance(v, dict) else None
        for i in range(n):
            if mask is None or mask[i]:
                out[i][k] = parts[i] if parts is not None else _row(v, i)
    return out


def to_sb3_vec_env(
    env_id_or_env: str | VectorEnv,
    n_envs: int = DEFAULT_N_ENVS,
    seed: int | None = 0,
    **env_kwargs: Any,
) -> RecoSB3VecEnv:
    """A Stable-Baselines3 `VecEnv` over ``n_envs`` simulated users stepped in one batch.

    Args:
        env_id_or_env: a registered id (``"recoworld/Retention-v0"`` or the module-prefixed
            ``"recoworld:recoworld/Retention-v0"``), built with ``gym.make_vec(...,
            vectorization_mode="vector_entry_point", autoreset_mode="same_step")``; or a
            gymnasium vector env already in same-step autoreset mode (``n_envs`` and
            ``env_kwargs`` must then be left out).
        n_envs: users stepped together (the VecEnv's ``num_envs``).
        seed: seed of the first `reset` (slot ``i`` gets ``seed + i``, as in SB3); None leaves
            the env unseeded until `seed` is called.
        **env_kwargs: `recoworld.envs.EnvConfig` fields (``n_items=300``, ``slate_size=1``...).

    Returns:
        The adapter; ``reset()`` returns ``{"candidates": (n, K, F), "user": (n, U),
        "instruction": (n, I)}`` float32 and ``step`` returns rewards ``(n,)`` float32, dones
        ``(n,)`` bool and a list of ``n`` info dicts.

    Example:
        >>> venv = to_sb3_vec_env("recoworld/Engagement-v0", n_envs=4, n_items=300,
        ...                       num_candidates=10)
        >>> obs = venv.reset()
        >>> obs["candidates"].shape
        (4, 10, 37)
    """
    if isinstance(env_id_or_env, str):
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ConfigError(f"n_envs={n_envs!r} must be a positive integer")
        import recoworld  # noqa: F401  (registers the ids)

        env = gym.make_vec(
            env_id_or_env,
            num_envs=n_envs,
            vectorization_mode="vector_entry_point",
            autoreset_mode="same_step",
            **env_kwargs,
        )
    elif isinstance(env_id_or_env, VectorEnv):
        if env_kwargs:
            raise ConfigError(
                f"env keyword arguments {sorted(env_kwargs)} given with an env instance; pass "
                "them to the env's constructor instead"
            )
        env = env_id_or_env
        if n_envs not in (DEFAULT_N_ENVS, env.num_envs):
            raise ConfigError(f"n_envs={n_envs} but the given env has {env.num_envs} slots")
    else:
        raise ConfigError(
            f"expected an env id or a gymnasium VectorEnv, got {type(env_id_or_env).__name__}"
        )
    venv = RecoSB3VecEnv(env)
    if seed is not None:
        venv.seed(seed)
    return venv


def space_of(env: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """``(observation_space, action_space)`` of one user, for a single env, a gymnasium vector
    env or an SB3 `VecEnv`."""
    if isinstance(env, VecEnv):
        return env.observation_space, env.action_space
    obs = getattr(env, "single_observation_space", None) or env.observation_space
    act = getattr(env, "single_action_space", None) or env.action_space
    return obs, act
