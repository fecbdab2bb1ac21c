"""`HierarchicalNoveltyAgent`: a two-level PPO recommender for novelty-seeking users.

After "Hierarchical Reinforcement Learning for Modeling User Novelty-Seeking Intent in
Recommender Systems": a user's appetite for novelty has a static part (its trait) and a
session-level part (this session's propensity). The agent has

- a **high level** that acts at each session start and every ``interval`` (M) steps: from the
  user's observable history (novel vs familiar clicks and skips this session and before) it
  picks one of ``n_levels`` novelty levels;
- a **low level** that scores the K candidates conditioned on that level (`LowLevel`: the SB3
  PPO torso with the level as input, plus a score shift towards topics new to the user that
  grows with the level) and shows a Plackett-Luce slate.

Both are PPO-clipped actor-critics on their own time scales: the low level per step (GAE),
the high level per decision on the discounted reward accumulated until its next decision
(SMDP GAE, `recoworld.agents.hrl_rollout`). ``hierarchy=False`` switches the high level off:
the same module is then flat PPO with the same torso (the ablation's baseline).

Read CleanRL style, top to bottom: `HRLConfig` (validated) and the agent (acting, saving)
here, the networks in `recoworld.agents.hrl_nets`, the advantages in
`recoworld.agents.hrl_rollout`, the loop and the two PPO updates in
`recoworld.agents.hrl_train`. ``recoworld train --algo hrl`` trains it (``--algo hrl_flat``:
the flat ablation; `register_algorithm`), ``recoworld evaluate --policy model.zip`` evaluates
it. The agent seeds torch itself (weights and action sampling) from ``seed``.

Example:
    >>> agent = HierarchicalNoveltyAgent(
    ...     "recoworld/NoveltySeeking-v0", n_envs=4, n_steps=16,
    ...     env_kwargs={"n_items": 200, "num_candidates": 10},
    ... )
    >>> _ = agent.learn(128)
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.errors import ConfigError, require
from recoworld.types import Recommendation

USER_SCALARS = 9  # step, day, session, clicks, skips, novel/familiar (session, lifetime)
STATE_FILE, CONFIG_FILE = "hrl_state.pt", "hrl.json"  # not .pth: SB3's loader would read it


@dataclass(frozen=True)
class HRLConfig:
    """Hyperparameters of `HierarchicalNoveltyAgent` (checked at construction).

    Attributes:
        hierarchy: False gives flat PPO: no high level, no level input, same torso.
        n_levels: novelty levels the high level chooses from (>= 2).
        interval: M, steps between high-level decisions inside a session (>= 1; it also acts
            at every session start).
        level_bias: score shift ``bias * level_value`` of candidates from new topics
            (``level_value`` in ``[-1, 1]``); >= 0.
        n_envs: users stepped together when the agent builds its own env from an id.
        n_steps: rollout length per user between updates.
        learning_rate, n_epochs, batch_size, clip_coef, max_grad_norm: PPO's.
        gamma: per-step discount of both levels (the high level discounts ``γ^τ`` over a
            segment of τ steps); gae_lambda: GAE's λ.
        ent_coef: low-level entropy bonus (0: plain PPO; > 0: entropy-regularised PPO);
            high_ent_coef: the high level's.
        vf_coef: value-loss weight.
        hidden, embed_dim: torso sizes (`CandidateExtractor`'s defaults).
        normalize_reward: scale rewards by a running return standard deviation.
        seed: seeds torch (weights, sampling) and the training users.
    """

    hierarchy: bool = True
    n_levels: int = 3
    interval: int = 5
    level_bias: float = 1.0
    n_envs: int = 16
    n_steps: int = 64
    learning_rate: float = 3e-4
    n_epochs: int = 5
    batch_size: int = 256
    clip_coef: float = 0.2
    max_grad_norm: float = 0.5
    gamma: float = 0.95
    gae_lambda: float = 0.95
    ent_coef: float = 0.0
    high_ent_coef: float = 0.01
    vf_coef: float = 0.5
    hidden: int = 64
    embed_dim: int = 32
    normalize_reward: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        ints = {"n_levels": 2, "interval": 1, "n_envs": 1, "n_steps": 1, "n_epochs": 1}
        ints.update(batch_size=1, hidden=1, embed_dim=1)
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                hint = " (M: steps between novelty decisions)" if name == "interval" else ""
                raise ConfigError(f"{name}={v!r} must be an integer >= {low}{hint}")
        reals = ("level_bias", "ent_coef", "high_ent_coef", "vf_coef", "max_grad_norm")
        for name in (*reals, "learning_rate", "clip_coef", "gamma", "gae_lambda"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ConfigError(
                    f"{name}={v!r} must be a number (e.g. {name}={getattr(HRLConfig, name)!r})"
                )
        for bool_name in ("hierarchy", "normalize_reward"):
            if not isinstance(getattr(self, bool_name), (bool, np.bool_)):
                raise ConfigError(f"{bool_name}={getattr(self, bool_name)!r} must be True or False")
        for name in reals:
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ConfigError(f"{name}={v!r} must be a finite number >= 0")
        for name in ("learning_rate", "clip_coef"):
            v = getattr(self, name)
            if not np.isfinite(v) or v <= 0:
                raise ConfigError(f"{name}={v!r} must be > 0")
        for name in ("gamma", "gae_lambda"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name}={v!r} must be in [0, 1]")


def _known_ids() -> list[str]:
    import gymnasium as gym

    import recoworld  # noqa: F401  (registers the ids)

    return sorted(k for k in gym.registry if k.startswith("recoworld/"))


def make_env(env_id: str, n_envs: int, **env_kwargs: Any) -> Any:
    """The native vector env of ``env_id`` (same-step autoreset); unknown ids list the known."""
    import gymnasium as gym

    bare = env_id.split(":", 1)[-1]
    if bare not in _known_ids():
        raise ConfigError(f"unknown env id {env_id!r}; choose one of {_known_ids()}")
    return gym.make_vec(
        bare,
        num_envs=n_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode="same_step",
        **env_kwargs,
    )


def _spaces(env: Any) -> tuple[Any, Any]:
    if isinstance(env, tuple):  # (observation space, action space), e.g. from a saved model
        return env
    obs = getattr(env, "single_observation_space", None) or env.observation_space
    act = getattr(env, "single_action_space", None) or env.action_space
    return obs, act


def _catalog_dim(env: Any) -> int | None:
    """The catalog's embedding size, found through wrappers (gymnasium or SB3)."""
    for _ in range(8):
        base = getattr(env, "unwrapped", env)
        catalog = getattr(base, "catalog", None)
        if catalog is not None:
            return int(catalog.dim)
        env = getattr(env, "venv", None)
        if env is None:
            return None
    return None


def check_observation(
    obs_space: Any, dim: int | None, new_col: int | None = None
) -> tuple[int, int]:
    """``(K, topic-new column)`` of a recoworld observation; fails naming missing fields."""
    from gymnasium import spaces

    need = {
        "candidates": "(K, F) candidate features with the 'topic new to the user' column",
        "user": f"at least {USER_SCALARS} history scalars: novel/familiar clicks and skips",
        "instruction": "the instruction encoding the torso reads",
    }
    have = obs_space.spaces if isinstance(obs_space, spaces.Dict) else {}
    missing = [k for k in need if k not in have]
    if missing:
        raise ConfigError(
            f"the env's observation lacks {missing}, which HierarchicalNoveltyAgent needs ("
            + "; ".join(f"{k}: {need[k]}" for k in missing)
            + f"); got {obs_space}. Use a recoworld env (e.g. recoworld/NoveltySeeking-v0)"
        )
    cand, user = have["candidates"].shape or (), have["user"].shape or ()
    if new_col is None:
        new_col = dim + 3 if dim is not None else (cand[-1] - 2 if cand else -1)
    if len(cand) != 2 or not 0 <= new_col < cand[1]:
        raise ConfigError(
            f"observation 'candidates' has shape {cand}; need (K, F) with the 'topic new to "
            f"the user' column at index {new_col} (after the embedding and 3 item features)"
        )
    if len(user) != 1 or user[0] < USER_SCALARS:
        raise ConfigError(
            f"observation 'user' has shape {user}; need at least {USER_SCALARS} history "
            "scalars (novel vs familiar clicks this session and in the lifetime)"
        )
    return int(cand[0]), int(new_col)


def session_step(user: np.ndarray) -> np.ndarray:
    """``(n,)`` step in session, recovered from the observation's squashed ``c / (c + 5)``."""
    x = np.clip(np.asarray(user)[:, 0].astype(np.float64), 0.0, 1.0 - 1e-6)
    return np.rint(5.0 * x / (1.0 - x)).astype(np.int64)


class HierarchicalNoveltyAgent:
    """Two-level PPO recommender (see the module docstring); a `Recommender`.

    Args:
        env: a recoworld env id (a native vector env of ``n_envs`` users is built, same-step
            autoreset), a gymnasium vector env, an SB3 VecEnv (what ``recoworld train``
            passes), a single env, or ``(observation_space, action_space)`` (acting only;
            `learn` needs a vector env).
        config: an `HRLConfig`; keyword ``overrides`` replace its fields.
        env_kwargs: `EnvConfig` fields when ``env`` is an id.
        deterministic: `recommend` shows the top slate under the most likely level (True) or
            samples both levels (False, with propensities).

    Raises:
        ConfigError: bad hyperparameters, an unknown env id, an observation without the
            fields the agent needs (named), a ``Box`` action space.
    """

    def __init__(
        self,
        env: Any,
        config: HRLConfig | None = None,
        *,
        env_kwargs: dict[str, Any] | None = None,
        deterministic: bool = True,
        device: str = "cpu",
        new_col: int | None = None,
        **overrides: Any,
    ) -> None:
        require("torch", "rl")
        import torch as th

        from recoworld.agents.base import _slate_size
        from recoworld.agents.hrl_nets import HighLevel, LowLevel

        bad = [k for k in overrides if k not in {f.name for f in fields(HRLConfig)}]
        if bad:
            raise ConfigError(f"unknown HRLConfig fields {bad}; known: {_field_names()}")
        self.config = cfg = replace(config or HRLConfig(), **overrides)
        if isinstance(env, str):
            env = make_env(env, cfg.n_envs, **(env_kwargs or {}))
        self.env = env
        obs_space, act_space = _spaces(env)
        self.k, self.new_col = check_observation(obs_space, _catalog_dim(env), new_col)
        self.slate_size = _slate_size(act_space)
        self.obs_space, self.action_space = obs_space, act_space
        self.device = th.device(device)
        levels = cfg.n_levels if cfg.hierarchy else 0
        user_dim = int(obs_space["user"].shape[0])
        with th.random.fork_rng():  # seeded initial weights; torch's global stream untouched
            th.manual_seed(cfg.seed)
            self.low = LowLevel(
                obs_space, levels, self.new_col, cfg.level_bias, cfg.hidden, cfg.embed_dim
            ).to(self.device)
            self.high = HighLevel(user_dim, cfg.n_levels, cfg.hidden).to(self.device)
        self.optimizer = th.optim.Adam(self.low.parameters(), lr=cfg.learning_rate, eps=1e-5)
        self.high_optimizer = th.optim.Adam(self.high.parameters(), lr=cfg.learning_rate, eps=1e-5)
        self.generator = th.Generator().manual_seed(cfg.seed)
        self.deterministic = deterministic
        self.level: np.ndarray = np.zeros(0, np.int64)  # per-user current level, -1: none
        self.num_timesteps = 0
        self.logger: Any = None
        self.history: list[dict[str, float]] = []  # one row per update

    # --- acting ---------------------------------------------------------------------------
    def _tensors(self, obs: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch as th

        for key in ("candidates", "user", "instruction"):
            want, got = self.obs_space[key].shape, np.shape(obs[key])[1:]
            if got != want:
                raise ConfigError(
                    f"observation {key!r} has shape {got} per user, the agent was built for "
                    f"{want}; use an env made with the arguments used in training"
                )
        return {
            k: th.as_tensor(np.asarray(obs[k]), dtype=th.float32, device=self.device)
            for k in ("candidates", "user", "instruction")
        }

    def decision_points(
        self, obs: dict[str, np.ndarray], episode_start: np.ndarray | None = None
    ) -> np.ndarray:
        """``(n,)`` bool: rows where the high level acts now — at a session's first step,
        every ``interval`` steps inside it, and for rows without a level yet."""
        n = np.asarray(obs["user"]).shape[0]
        if self.level.shape[0] != n:
            self.level = np.full(n, -1, np.int64)
        due = (session_step(obs["user"]) % self.config.interval == 0) | (self.level < 0)
        if episode_start is not None:
            due |= np.asarray(episode_start, bool)
        return due if self.config.hierarchy else np.zeros(n, bool)

    def act(
        self,
        obs: dict[str, np.ndarray],
        deterministic: bool = False,
        episode_start: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """One batched step: levels (where due) and slates.

        Returns:
            ``action`` ``(n, L)``, ``level`` ``(n,)``, ``decide`` ``(n,)`` bool, ``logp``
            ``(n,)`` (slate), ``value`` ``(n,)``, ``logp_high`` and ``value_high`` ``(n,)``.
        """
        import torch as th

        from recoworld.agents.hrl_nets import sample_slate, slate_log_prob

        decide = self.decision_points(obs, episode_start)
        n = decide.shape[0]
        with th.no_grad():
            t = self._tensors(obs)
            logits, v_high = self.high(t["user"])
            if deterministic:
                new = logits.argmax(1)
            else:
                probs = th.softmax(logits, 1).cpu()  # the sampling generator lives on the CPU
                new = th.multinomial(probs, 1, generator=self.generator)[:, 0]
            level = np.where(decide, new.cpu().numpy(), np.maximum(self.level, 0))
            lvl = th.as_tensor(level, device=self.device)
            logp_high = th.log_softmax(logits, 1).gather(1, lvl[:, None])[:, 0]
            scores, value = self.low(t, lvl if self.config.hierarchy else None)
            action = sample_slate(scores, self.slate_size, self.generator, deterministic)
            logp, _, _ = slate_log_prob(scores, action)
        self.level = level if self.config.hierarchy else np.zeros(n, np.int64)
        return {
            "action": action.cpu().numpy(),
            "level": level,
            "decide": decide,
            "logp": logp.cpu().numpy(),
            "value": value.cpu().numpy(),
            "logp_high": logp_high.cpu().numpy(),
            "value_high": v_high.cpu().numpy(),
        }

    def _format(self, action: np.ndarray) -> np.ndarray:
        return action[:, 0] if self.slate_size == 1 else action

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        """Slates for a batch of users (the `Recommender` protocol).

        Deterministic (the default): the most likely level, the top slate; propensities 1.
        Otherwise both levels are sampled, and ``propensity[:, j]`` is the probability of
        slot j's item given the slots above under the agent's whole policy: at a decision
        point a mixture over levels (weighted by the level posterior given the slots above),
        else the current level's Plackett-Luce probability. ``extras["level"]`` holds the
        levels.
        """
        if self.deterministic:
            out = self.act(obs, deterministic=True)
            prop = np.ones(out["action"].shape)
            return Recommendation(self._format(out["action"]), prop, True, {"level": out["level"]})
        n = np.asarray(obs["user"]).shape[0]
        before = self.level.copy() if self.level.shape[0] == n else np.full(n, -1, np.int64)
        out = self.act(obs)
        prop = self._propensity(obs, out, before)
        return Recommendation(self._format(out["action"]), prop, False, {"level": out["level"]})

    def _propensity(
        self, obs: dict[str, np.ndarray], out: dict[str, np.ndarray], before: np.ndarray
    ) -> np.ndarray:
        import torch as th

        from recoworld.agents.hrl_nets import slate_log_prob

        cfg, n = self.config, out["action"].shape[0]
        action = th.as_tensor(out["action"], device=self.device)
        with th.no_grad():
            t = self._tensors(obs)
            if not cfg.hierarchy:
                scores, _ = self.low(t, None)
                return slate_log_prob(scores, action)[1].exp().cpu().numpy()  # type: ignore[no-any-return]
            logits, _ = self.high(t["user"])
            prior = th.log_softmax(logits, 1)  # (n, G)
            keep = th.as_tensor(~out["decide"], device=self.device)
            fixed = th.full_like(prior, float("-inf"))
            rows = th.arange(n, device=self.device)
            fixed[rows, th.as_tensor(np.maximum(before, 0), device=self.device)] = 0.0
            log_w = th.where(keep[:, None], fixed, prior)
            per_level = []
            for g in range(cfg.n_levels):
                scores, _ = self.low(t, th.full((n,), g, dtype=th.long, device=self.device))
                per_level.append(slate_log_prob(scores, action)[1])
            slots = th.stack(per_level, 1)  # (n, G, L) log p(slot j | above, level)
            upto = th.cumsum(slots, 2)
            joint = th.logsumexp(log_w[:, :, None] + upto, 1)  # log p(slots <= j)
            prev = th.cat([joint.new_zeros((n, 1)), joint[:, :-1]], 1)
            return (joint - prev).exp().cpu().numpy()  # type: ignore[no-any-return]

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the current level of users ``mask`` (all when None)."""
        if mask is None:
            self.level = np.zeros(0, np.int64)
        elif self.level.shape[0]:
            self.level[np.asarray(mask, bool)] = -1

    def select(self, keep: np.ndarray) -> None:
        """Keep only rows ``keep`` of the per-user levels."""
        if self.level.shape[0]:
            self.level = self.level[keep]

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """SB3-style ``predict``; ``state`` carries the per-user levels between calls (the
        agent's own per-user levels, e.g. of a training rollout in progress, are untouched)."""
        own = self.level
        n = np.asarray(observation["user"]).shape[0]
        self.level = np.full(n, -1, np.int64) if state is None else np.asarray(state).copy()
        try:
            out = self.act(observation, deterministic, episode_start)
        finally:
            self.level = own
        return self._format(out["action"]), out["level"].copy()

    # --- saving ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a zip with the config, the spaces' sizes and the weights; returns its path."""
        import torch as th

        path = Path(path)
        if path.suffix != ".zip":
            path = path.with_name(path.name + ".zip")
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        th.save({"low": self.low.state_dict(), "high": self.high.state_dict()}, buf)
        meta = {
            "config": asdict(self.config),
            "k": self.k,
            "new_col": self.new_col,
            "slate_size": self.slate_size,
            "obs_shapes": {k: list(v.shape) for k, v in self.obs_space.spaces.items()},
        }
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(CONFIG_FILE, json.dumps(meta, indent=2))
            zf.writestr(STATE_FILE, buf.getvalue())
        return path

    @classmethod
    def load(
        cls, path: str | Path, env: Any = None, device: str = "cpu", deterministic: bool = True
    ) -> HierarchicalNoveltyAgent:
        """An agent saved by `save`, for ``env`` (an id, single, vector or SB3 env; None: the
        spaces it was trained on).

        Raises:
            ConfigError: no such file, not an HRL model, or observation shapes that differ
                from the env's (named).
        """
        import torch as th

        path = Path(path)
        if path.is_dir():
            path = path / "model.zip"
        if not path.is_file():
            raise ConfigError(f"no saved HRL model at {path}; give the .zip written by save()")
        with zipfile.ZipFile(path) as zf:
            if CONFIG_FILE not in zf.namelist():
                raise ConfigError(f"{path} is not a HierarchicalNoveltyAgent model (no hrl.json)")
            meta = json.loads(zf.read(CONFIG_FILE))
            state = th.load(io.BytesIO(zf.read(STATE_FILE)), map_location=device)
        if env is None:  # the spaces the model was trained on
            from gymnasium import spaces

            shapes = meta["obs_shapes"]
            obs_space = spaces.Dict(
                {k: spaces.Box(-1.0, 1.0, tuple(v), np.float32) for k, v in shapes.items()}
            )
            k, size = meta["k"], meta["slate_size"]
            act: Any = spaces.Discrete(k) if size == 1 else spaces.MultiDiscrete([k] * size)
            env = (obs_space, act)
        elif isinstance(env, str):
            import gymnasium as gym

            bare = env.split(":", 1)[-1]
            if bare not in _known_ids():
                raise ConfigError(f"unknown env id {env!r}; choose one of {_known_ids()}")
            env = gym.make(bare)
        obs_space, _ = _spaces(env)
        for key, shape in meta["obs_shapes"].items():
            have = list(obs_space[key].shape) if key in obs_space.spaces else None
            if have != shape:
                raise ConfigError(
                    f"observation {key!r} of the saved model has shape {shape}, the env's "
                    f"{have}; make the env with the arguments used in training"
                )
        config = HRLConfig(**meta["config"])
        agent = cls(
            env, config, deterministic=deterministic, device=device, new_col=meta["new_col"]
        )
        agent.low.load_state_dict(state["low"])
        agent.high.load_state_dict(state["high"])
        return agent

    # --- SB3-facing glue for `recoworld train` -------------------------------------------
    def set_logger(self, logger: Any) -> None:
        self.logger = logger

    def get_env(self) -> Any:
        return self.env

    def get_vec_normalize_env(self) -> None:
        return None  # evaluation envs never scale rewards; nothing to sync

    # --- training -------------------------------------------------------------------------
    def learn(
        self, total_timesteps: int, callback: Any = None, seed: int | None = None
    ) -> HierarchicalNoveltyAgent:
        """Train for ``total_timesteps`` user-steps (see `recoworld.agents.hrl_train`)."""
        from recoworld.agents.hrl_train import learn

        learn(self, total_timesteps, callback, seed)
        return self


def _field_names() -> list[str]:
    return [f.name for f in fields(HRLConfig)]


# --- registration ------------------------------------------------------------------------


def _make_hrl(
    env: Any,
    *,
    seed: int,
    total_timesteps: int | None = None,
    policy: Any = None,
    policy_kwargs: Any = None,
    device: str = "cpu",
    verbose: int = 0,
    **algo_kwargs: Any,
) -> HierarchicalNoveltyAgent:
    if policy is not None or policy_kwargs:
        raise ConfigError("the hrl algorithm has its own networks; set hidden / embed_dim instead")
    # `recoworld train` already scales rewards with VecNormalize: do not scale them twice
    scaled = getattr(env, "norm_reward", False)
    kwargs = {"normalize_reward": not scaled, **algo_kwargs}
    if total_timesteps:
        n_steps = int(kwargs.get("n_steps", HRLConfig.n_steps))
        kwargs["n_steps"] = max(min(n_steps, total_timesteps // env.num_envs), 4)
    return HierarchicalNoveltyAgent(env, seed=seed, device=device, **kwargs)


def _register() -> None:
    from recoworld.agents.sb3.train import register_algorithm

    def load(path: Path, device: str) -> HierarchicalNoveltyAgent:
        return HierarchicalNoveltyAgent.load(path, None, device)

    def make_flat(env: Any, **kwargs: Any) -> HierarchicalNoveltyAgent:
        return _make_hrl(env, **{"hierarchy": False, **kwargs})

    register_algorithm("hrl", _make_hrl, load, "hierarchical novelty PPO (recoworld.agents.hrl)")
    register_algorithm("hrl_flat", make_flat, load, "flat PPO with hrl's torso (hierarchy off)")


_register()
