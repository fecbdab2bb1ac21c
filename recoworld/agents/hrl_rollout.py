"""Advantages of `HierarchicalNoveltyAgent`: GAE for the low level, SMDP GAE for the high level,
and the env drivers that let one training loop run on a native vector env or an SB3 VecEnv.

Arrays are ``(T, N)``: T rollout steps of N users. ``skip`` marks steps that only started a new
user (next-step autoreset: the action was ignored); they take no part in any loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def low_advantages(
    reward: np.ndarray,
    value: np.ndarray,
    done: np.ndarray,
    last_value: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """GAE(λ) per step, no bootstrap past an episode's end.

    Args:
        reward, value, done: ``(T, N)``; last_value: ``(N,)`` value after the last step.

    Returns:
        ``(T, N)`` advantages (returns are advantages plus values).
    """
    t_len = reward.shape[0]
    adv = np.zeros_like(reward)
    last = np.zeros(reward.shape[1])
    next_value = last_value
    for t in range(t_len - 1, -1, -1):
        nonterm = 1.0 - done[t]
        delta = reward[t] + gamma * next_value * nonterm - value[t]
        last = delta + gamma * lam * nonterm * last
        adv[t] = last
        next_value = value[t]
    return adv


def high_advantages(
    reward: np.ndarray,
    decide: np.ndarray,
    value: np.ndarray,
    done: np.ndarray,
    last_value: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """SMDP GAE(λ) of the high level, at its decision steps.

    A decision at step t is rewarded with the discounted reward accumulated until the next
    decision ``t + τ`` (``sum_{i<τ} γ^i r_{t+i}``) and bootstrapped with ``γ^τ V(t + τ)``
    (nothing when the episode ends first); ``A_t = δ_t + λ γ^τ A_{t+τ}``. A segment still open
    at the rollout's end is bootstrapped with ``last_value``, the high-level value of the last
    observation.

    Args:
        reward, done: ``(T, N)``; decide: ``(T, N)`` bool, where the high level acted;
        value: ``(T, N)`` high-level values (read where ``decide``); last_value: ``(N,)``.

    Returns:
        ``(T, N)`` advantages, 0 where the high level did not act.
    """
    t_len, n = reward.shape
    adv = np.zeros_like(reward)
    seg = np.zeros(n)  # discounted reward from t to the end of t's segment
    boot_v = np.zeros(n)  # γ^τ V(next decision), seen from t
    boot_a = np.zeros(n)  # γ^τ A(next decision), seen from t
    next_dec = np.ones(n, bool)  # the step after the rollout acts as a decision
    next_v, next_a = last_value.astype(np.float64), np.zeros(n)
    for t in range(t_len - 1, -1, -1):
        nonterm = 1.0 - done[t]
        seg = reward[t] + gamma * nonterm * np.where(next_dec, 0.0, seg)
        boot_v = nonterm * gamma * np.where(next_dec, next_v, boot_v)
        boot_a = nonterm * gamma * np.where(next_dec, next_a, boot_a)
        a = seg + boot_v - value[t] + lam * boot_a
        d = decide[t]
        adv[t] = np.where(d, a, 0.0)
        next_dec = d
        next_v = np.where(d, value[t], next_v)
        next_a = np.where(d, a, next_a)
    return adv


class RunningReturnScale:
    """Divides rewards by a running standard deviation of the discounted return (as SB3's
    `VecNormalize` does): returns here are in the tens, and a critic starting near 0 would
    otherwise need thousands of updates to reach them."""

    def __init__(self, n: int, gamma: float) -> None:
        self.ret = np.zeros(n)
        self.gamma = gamma
        self.count, self.mean, self.m2 = 1e-4, 0.0, 0.0

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + reward
        x = self.ret
        b_mean, b_var, b_n = float(x.mean()), float(x.var()), x.size
        delta, tot = b_mean - self.mean, self.count + b_n
        self.m2 += b_var * b_n + delta**2 * self.count * b_n / tot
        self.mean += delta * b_n / tot
        self.count = tot
        self.ret = np.where(done, 0.0, self.ret)
        return reward / np.sqrt(self.m2 / self.count + 1e-8)


class GymDriver:
    """A gymnasium vector env (next-step or same-step autoreset) for the training loop."""

    def __init__(self, env: Any) -> None:
        from gymnasium.vector import AutoresetMode

        self.env = env
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self.next_step = mode == AutoresetMode.NEXT_STEP
        self.num_envs = env.num_envs
        self._done = np.zeros(env.num_envs, bool)

    def reset(self, seed: int | None) -> dict[str, np.ndarray]:
        obs, _ = self.env.reset(seed=seed)
        self._done[:] = False
        return obs  # type: ignore[no-any-return]

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, Any]:
        """``(obs, reward, done, skip, infos)``; ``skip`` marks the steps whose action was
        ignored because they only started a new user."""
        skip = self._done.copy() if self.next_step else np.zeros(self.num_envs, bool)
        obs, reward, term, trunc, info = self.env.step(action)
        done = (np.asarray(term) | np.asarray(trunc)) & ~skip
        self._done = done
        return obs, np.asarray(reward, np.float64), done, skip, info


class SB3Driver:
    """An SB3 VecEnv (same-step autoreset, what `recoworld train` builds) for the loop."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.num_envs = env.num_envs

    def reset(self, seed: int | None) -> dict[str, np.ndarray]:
        if seed is not None:
            self.env.seed(seed)
        return self.env.reset()  # type: ignore[no-any-return]

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, Any]:
        obs, reward, done, infos = self.env.step(action)
        skip = np.zeros(self.num_envs, bool)
        return obs, np.asarray(reward, np.float64), np.asarray(done, bool), skip, infos
