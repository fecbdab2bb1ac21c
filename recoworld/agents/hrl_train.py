"""The training loop of `HierarchicalNoveltyAgent`: rollouts, advantages, the two PPO updates.

One update: ``n_steps`` batched steps of the vector env (the high level acting where due), then
GAE for the low level and SMDP GAE for the high level (`recoworld.agents.hrl_rollout`), then
``n_epochs`` of clipped PPO on each level with its own optimizer and its own samples (every
step for the low level, only the decision steps for the high level).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recoworld.agents.hrl_rollout import (
    GymDriver,
    RunningReturnScale,
    SB3Driver,
    high_advantages,
    low_advantages,
)
from recoworld.errors import ConfigError

KEYS = ("candidates", "user", "instruction")


def _driver(env: Any) -> GymDriver | SB3Driver:
    from gymnasium.vector import VectorEnv

    if isinstance(env, VectorEnv):
        return GymDriver(env)
    if hasattr(env, "step_async") and hasattr(env, "num_envs"):
        return SB3Driver(env)
    raise ConfigError(
        f"learn() needs a vector env, got {type(env).__name__}; build the agent from an env id "
        "or gym.make_vec(..., vectorization_mode='vector_entry_point')"
    )


def _ppo_loss(logp: Any, old_logp: Any, adv: Any, clip: float) -> tuple[Any, float]:
    import torch as th

    if adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = th.exp(logp - old_logp)
    loss = th.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    with th.no_grad():
        kl = float(((ratio - 1) - (logp - old_logp)).mean())
    return loss, kl


def learn(agent: Any, total_timesteps: int, callback: Any = None, seed: int | None = None) -> None:
    """Train ``agent`` for ``total_timesteps`` user-steps on ``agent.env``.

    Args:
        agent: a `HierarchicalNoveltyAgent`.
        total_timesteps: user-steps (all users together), rounded up to whole rollouts.
        callback: an SB3 callback (``recoworld train`` passes its list), or a function
            ``callback(agent, stats) -> bool | None`` called after each update (False stops).
        seed: seed of the training users (default: the config's on the first call; later
            calls continue with the env's next users).
    """
    import torch as th

    if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, (int, np.integer)):
        raise ConfigError(f"total_timesteps={total_timesteps!r} must be a positive integer")
    if total_timesteps < 1:
        raise ConfigError(f"total_timesteps={total_timesteps!r} must be a positive integer")
    cfg = agent.config
    driver = _driver(agent.env)
    n, t_len = driver.num_envs, cfg.n_steps
    scale = RunningReturnScale(n, cfg.gamma) if cfg.normalize_reward else None
    sb3 = callback is not None and hasattr(callback, "init_callback")
    if seed is None:  # the config's users first; a later call goes on with new users
        seed = cfg.seed if agent.num_timesteps == 0 else None
    obs = driver.reset(seed)
    agent.reset(None)
    infos: Any = None
    if sb3:
        callback.init_callback(agent)
        callback.on_training_start(locals(), globals())
    n_updates = -(-int(total_timesteps) // (t_len * n))
    keep_going = True
    for _ in range(n_updates):
        buf = {k: np.zeros((t_len, n, *np.asarray(obs[k]).shape[1:]), np.float32) for k in KEYS}
        arr = {
            k: np.zeros((t_len, n))
            for k in ("logp", "value", "logp_high", "value_high", "reward", "raw")
        }
        level = np.zeros((t_len, n), np.int64)
        action = np.zeros((t_len, n, agent.slate_size), np.int64)
        decide, done, skip = (np.zeros((t_len, n), bool) for _ in range(3))
        for t in range(t_len):
            out = agent.act(obs)
            for k in KEYS:
                buf[k][t] = obs[k]
            for k in ("logp", "value", "logp_high", "value_high"):
                arr[k][t] = out[k]
            level[t], action[t] = out["level"], out["action"]
            obs, reward, done[t], skip[t], infos = driver.step(agent._format(out["action"]))
            decide[t] = out["decide"] & ~skip[t]
            arr["raw"][t] = reward
            arr["reward"][t] = scale(reward, done[t]) if scale is not None else reward
            agent.num_timesteps += n
            agent.reset(done[t])  # a new user decides its own level
            if sb3:
                callback.update_locals({"infos": infos})
                keep_going = bool(callback.on_step()) and keep_going
        with th.no_grad():
            tens = agent._tensors(obs)
            lvl = th.as_tensor(np.maximum(agent.level, 0), device=agent.device)
            _, last_v = agent.low(tens, lvl if cfg.hierarchy else None)
            _, last_vh = agent.high(tens["user"])
        adv = low_advantages(
            arr["reward"], arr["value"], done, last_v.cpu().numpy(), cfg.gamma, cfg.gae_lambda
        )
        stats = _update_low(agent, buf, level, action, arr, adv, ~skip)
        if cfg.hierarchy:
            adv_h = high_advantages(
                arr["reward"], decide, arr["value_high"], done, last_vh.cpu().numpy(), cfg.gamma,
                cfg.gae_lambda,
            )  # fmt: skip
            stats.update(_update_high(agent, buf["user"], level, arr, adv_h, decide))
            chosen = level[decide]
            for g in range(cfg.n_levels):
                stats[f"level_{g}_share"] = float(np.mean(chosen == g)) if chosen.size else 0.0
        stats["reward_per_step"] = float(arr["raw"][~skip].mean())
        agent.history.append(stats)
        if agent.logger is not None:
            for key, value in stats.items():
                agent.logger.record(f"train/{key}", value)
            agent.logger.dump(agent.num_timesteps)
        if not sb3 and callback is not None and callback(agent, stats) is False:
            break
        if not keep_going:
            break
    if sb3:
        callback.on_training_end()


def _t(agent: Any, x: np.ndarray, dtype: Any = None) -> Any:
    import torch as th

    return th.as_tensor(x, dtype=dtype, device=agent.device)


def _batches(count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(count)
    return [perm[i : i + size] for i in range(0, count, size)]


def _update_low(
    agent: Any,
    buf: dict[str, np.ndarray],
    level: np.ndarray,
    action: np.ndarray,
    arr: dict[str, np.ndarray],
    adv: np.ndarray,
    valid: np.ndarray,
) -> dict[str, float]:
    import torch as th

    from recoworld.agents.hrl_nets import slate_log_prob

    cfg = agent.config
    idx = np.flatnonzero(valid.reshape(-1))
    flat = {k: _t(agent, v.reshape(-1, *v.shape[2:])[idx]) for k, v in buf.items()}
    lvl = _t(agent, level.reshape(-1)[idx])
    act = _t(agent, action.reshape(-1, action.shape[-1])[idx])
    old = _t(agent, arr["logp"].reshape(-1)[idx], th.float32)
    a = _t(agent, adv.reshape(-1)[idx], th.float32)
    ret = a + _t(agent, arr["value"].reshape(-1)[idx], th.float32)
    rng = np.random.default_rng(cfg.seed + agent.num_timesteps)
    kls, ents, vls = [], [], []
    for _ in range(cfg.n_epochs):
        for mb in _batches(idx.size, cfg.batch_size, rng):
            m = _t(agent, mb)
            obs = {k: v[m] for k, v in flat.items()}
            scores, value = agent.low(obs, lvl[m] if cfg.hierarchy else None)
            logp, _, ent = slate_log_prob(scores, act[m])
            pg, kl = _ppo_loss(logp, old[m], a[m], cfg.clip_coef)
            v_loss = 0.5 * ((value - ret[m]) ** 2).mean()
            loss = pg - cfg.ent_coef * ent.mean() + cfg.vf_coef * v_loss
            agent.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(agent.low.parameters(), cfg.max_grad_norm)
            agent.optimizer.step()
            kls.append(kl)
            ents.append(float(ent.mean().detach()))
            vls.append(float(v_loss.detach()))
    return {"approx_kl": float(np.mean(kls)), "entropy": float(np.mean(ents)),
            "value_loss": float(np.mean(vls))}  # fmt: skip


def _update_high(
    agent: Any,
    user: np.ndarray,
    level: np.ndarray,
    arr: dict[str, np.ndarray],
    adv: np.ndarray,
    decide: np.ndarray,
) -> dict[str, float]:
    import torch as th

    cfg = agent.config
    idx = np.flatnonzero(decide.reshape(-1))
    if idx.size == 0:
        return {"high_decisions": 0.0}
    u = _t(agent, user.reshape(-1, user.shape[-1])[idx])
    lvl = _t(agent, level.reshape(-1)[idx])
    old = _t(agent, arr["logp_high"].reshape(-1)[idx], th.float32)
    a = _t(agent, adv.reshape(-1)[idx], th.float32)
    ret = a + _t(agent, arr["value_high"].reshape(-1)[idx], th.float32)
    rng = np.random.default_rng(cfg.seed + agent.num_timesteps + 1)
    size = max(min(cfg.batch_size, idx.size) // 2, 1)  # fewer samples: smaller minibatches
    kls = []
    for _ in range(cfg.n_epochs):
        for mb in _batches(idx.size, size, rng):
            m = _t(agent, mb)
            logits, value = agent.high(u[m])
            log_p = th.log_softmax(logits, 1)
            logp = log_p.gather(1, lvl[m][:, None])[:, 0]
            ent = -(log_p.exp() * log_p).sum(1).mean()
            pg, kl = _ppo_loss(logp, old[m], a[m], cfg.clip_coef)
            v_loss = 0.5 * ((value - ret[m]) ** 2).mean()
            loss = pg - cfg.high_ent_coef * ent + cfg.vf_coef * v_loss
            agent.high_optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(agent.high.parameters(), cfg.max_grad_norm)
            agent.high_optimizer.step()
            kls.append(kl)
    return {"high_decisions": float(idx.size), "high_approx_kl": float(np.mean(kls))}
