"""`RLIVAgent`: lifelong interaction value of user–author pairs (after RLIV-UA), in one file.

Read top to bottom: the arguments (`RLIVArgs`), the network (`RLIVNet`), the agent (acting,
one update, the online loop, offline training, save/load), and its registration with
``recoworld train --algo rliv``. Sample construction (SCRI-MDP transitions indexed by a pair's
meetings, and ASA's choice of the next state) lives in `recoworld.agents.rliv_data`.

The design:

- **SCRI-MDP.** A sample belongs to a user–author pair and spans two of its meetings
  (`PairMeetingTracker`): state = the candidate row of the author's item when shown (item
  features, the pair's history, the user's features), reward = the meeting's click, follow and
  gift, next state by ASA (`recoworld.agents.rliv_data`), discount ``gamma`` per *meeting*.
- **Multi-task critic (MTCL).** One shared torso, three heads ``Q_click``, ``Q_follow``,
  ``Q_gift``, each regressed on its own TD target ``r_h + gamma * Q_h'(s')`` (a Polyak target
  network), each target divided by the spread of its signal so that the dense click head
  shapes the torso as much as the sparse gift head does.
- **Auxiliary task.** Three more heads on the same torso predict the meeting's immediate click,
  follow and gift (binary cross-entropy).
- **Actor.** Candidates are ranked by ``sum_h w_h Q_h(s)`` (``w`` = the env's reward weights);
  the slate is the top ``slate_size``. While training, each candidate is promoted into the slate
  at random with probability ``eps * L / K`` (eps decays linearly).

**Offline training, from recorded trajectories**, takes either of two inputs, which give the
same samples for the same run (tests/test_rliv_logs.py):

- `record` runs any logging `Recommender` (a random policy, a heuristic, another agent) on
  UserAuthor-v0 and turns the requests into this agent's samples from the per-candidate
  features *as they were served* (item, pair and user columns of every candidate, what was
  shown, the click / follow / gift); they are kept as `Transitions` or saved to and loaded from
  ``.npz`` (`Transitions.save`);
- an ordinary request log in the project's log schema (`recoworld.replay.schema`, Parquet, one
  row per request, with the optional per-slot ``followed`` / ``gifted`` columns), written by
  `recoworld.agents.rliv_logs.write_request_log`: `recoworld.agents.rliv_logs.samples_from_log`
  rebuilds the observations by replaying each logged user through the env's own state updates
  (an observation holds only observable information, so it is a function of the logged
  history) and builds the samples as `record` does. A log without ``followed`` / ``gifted``
  (e.g. ``recoworld simulate``'s, of other envs) is refused: the sparse signals are not in it.

`fit_offline` trains on either without stepping the env.

Baselines are variants of the same module (`RLIVArgs`): ``mode="myopic"`` (the auxiliary heads
alone: a supervised predictor of the immediate click, follow and gift, ranking by their
weighted sum), ``mode="request"`` (the ordinary MDP over every request, `RequestTracker`),
``mtcl=False`` (the critic learns the gift head alone; click and follow enter the ranking through
the auxiliary predictions) and ``aux=False`` (no auxiliary loss).

Example:
    >>> from recoworld.agents.rliv import RLIVAgent, RLIVArgs
    >>> agent = RLIVAgent.for_env("recoworld/UserAuthor-v0", n_envs=4, n_items=300,
    ...                           num_candidates=20, n_requests=20, args=RLIVArgs(hidden=16))
    >>> _ = agent.learn(160)
    >>> agent.num_timesteps
    160
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.agents.rliv_data import (
    PairMeetingTracker,
    ReplayBuffer,
    RequestTracker,
    Transitions,
    make_tracker,
    state_rows,
)
from recoworld.errors import ConfigError, require
from recoworld.types import Recommendation

require("torch", "rl")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

MODES = ("rliv", "request", "myopic")
HEADS = ("click", "follow", "gift")
MIN_SCALE = 0.03  # about the spread of a 1-in-1000 binary signal

NOT_A_PAIR_ENV = (
    "RLIV needs an env with user–author features, and this one has {what}: each "
    "'candidates' row must end with the pair feature columns (pair_clicks, pair_following, "
    "pair_gifts, pair_since, pair_meetings) and every info must carry 'followed' and "
    "'gifted'; train it on recoworld/UserAuthor-v0"
)

# the float hyperparameters of `RLIVArgs` and their ranges: (low, high, low open, high open)
FLOAT_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "gamma": (0.0, 1.0, False, True),
    "learning_rate": (0.0, 1.0, True, False),
    "tau": (0.0, 1.0, True, False),
    "eps_start": (0.0, 1.0, False, False),
    "eps_end": (0.0, 1.0, False, False),
    "eps_fraction": (0.0, 1.0, True, False),
    "aux_weight": (0.0, math.inf, False, True),
}


def _interval(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    return f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def _real(name: str, value: Any, what: str) -> float:
    """``value`` as a float if it is a finite real number (not a bool, not a string), else a
    `ConfigError` naming ``name``, the value and what to give."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ConfigError(f"{name}={value!r} is not a finite real number; give {name} as {what}")


@dataclass(frozen=True)
class RLIVArgs:
    """Hyperparameters (CleanRL's ``Args``); ``recoworld train --algo-arg KEY=VALUE`` sets them.

    Attributes:
        mode: ``"rliv"`` (SCRI-MDP samples), ``"request"`` (ordinary MDP over every request)
            or ``"myopic"`` (supervised immediate predictions only).
        mtcl: train the click and follow critic heads too (multi-task critic learning).
        aux: train the auxiliary immediate-signal heads.
        gamma: discount per meeting (``rliv``) or per request (``request``).
        hidden: torso width.
        learning_rate: Adam's step size.
        batch_size: samples per update.
        buffer_size: replay capacity (samples).
        learning_starts: samples in the buffer before the first update.
        train_freq: environment steps (of all users at once) between update rounds.
        gradient_steps: updates per round.
        tau: Polyak rate of the target network.
        eps_start, eps_end, eps_fraction: exploration, decayed linearly over that fraction of
            the training steps.
        weights: the actor's weights of click, follow and gift (the env's reward weights).
        aux_weight: weight of the auxiliary loss.
    """

    mode: str = "rliv"
    mtcl: bool = True
    aux: bool = True
    gamma: float = 0.9
    hidden: int = 64
    learning_rate: float = 1e-3
    batch_size: int = 256
    buffer_size: int = 200_000
    learning_starts: int = 1_000
    train_freq: int = 1
    gradient_steps: int = 1
    tau: float = 0.02
    eps_start: float = 0.3
    eps_end: float = 0.02
    eps_fraction: float = 0.5
    weights: tuple[float, float, float] = (1.0, 5.0, 20.0)
    aux_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r}; choose one of {MODES}")
        if self.mode == "myopic" and not self.aux:
            raise ConfigError("mode='myopic' ranks by the auxiliary heads; it needs aux=True")
        for name, (lo, hi, lo_open, hi_open) in FLOAT_RANGES.items():
            v = _real(
                name, getattr(self, name), f"a number in {_interval(lo, hi, lo_open, hi_open)}"
            )
            if (v < lo or (lo_open and v == lo)) or (v > hi or (hi_open and v == hi)):
                raise ConfigError(
                    f"{name}={v} must be in {_interval(lo, hi, lo_open, hi_open)}; "
                    f"give e.g. {name}={getattr(RLIVArgs, name)}"
                )
            object.__setattr__(self, name, v)
        for name in ("hidden", "batch_size", "buffer_size", "train_freq", "gradient_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name}={v!r} must be a positive integer")
        if (
            not isinstance(self.learning_starts, int)
            or isinstance(self.learning_starts, bool)
            or self.learning_starts < 0
        ):
            raise ConfigError(f"learning_starts={self.learning_starts!r} must be an integer >= 0")
        ws = self.weights
        if isinstance(ws, (str, bytes)) or not hasattr(ws, "__len__") or len(ws) != 3:
            raise ConfigError(f"weights={ws!r}: give three finite non-negative numbers")
        w = tuple(_real(f"weights[{i}]", x, "a finite number >= 0") for i, x in enumerate(ws))
        if min(w) < 0:
            raise ConfigError(f"weights={ws!r}: give three finite non-negative numbers")
        object.__setattr__(self, "weights", w)

    @property
    def label(self) -> str:
        """A short name of the variant, e.g. ``"rliv-no-mtcl"``."""
        if self.mode == "myopic":
            return "myopic"
        base = "rliv" if self.mode == "rliv" else "request-rl"
        return base + ("" if self.mtcl else "-no-mtcl") + ("" if self.aux else "-no-aux")


def _check_pair_info(info: dict[str, Any]) -> None:
    """Refuse an env whose infos lack ``followed`` / ``gifted`` (`NOT_A_PAIR_ENV`)."""
    missing = [k for k in ("followed", "gifted") if k not in info]
    if missing:
        raise ConfigError(NOT_A_PAIR_ENV.format(what=f"no {' or '.join(missing)} in its info"))


def batch_infos(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-user info dicts -> one batched info, as a recoworld vector env gives it: each key
    that every user has, stacked (``(n, ...)`` arrays; object arrays for text such as
    ``instruction``). SB3's own keys (``episode``, ``terminal_observation``,
    ``TimeLimit.truncated``) are left out."""
    skip = {"episode", "terminal_observation", "TimeLimit.truncated"}
    out: dict[str, Any] = {}
    for k in infos[0]:
        if k in skip or not all(k in i for i in infos):
            continue
        vals = [i[k] for i in infos]
        if all(isinstance(v, (np.ndarray, np.generic, bool, int, float)) for v in vals):
            out[k] = np.stack([np.asarray(v) for v in vals])
        else:
            col = np.empty(len(vals), object)
            col[:] = vals
            out[k] = col
    return out


class RLIVNet(nn.Module):
    """Shared torso; critic heads (``Q_h / scale_h``) and auxiliary logits per signal.

    Args:
        in_dim: F, a candidate row plus the user's features; hidden: torso width.
    """

    scale: torch.Tensor

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.torso = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.critic = nn.ModuleDict({h: nn.Linear(hidden, 1) for h in HEADS})
        self.aux = nn.ModuleDict({h: nn.Linear(hidden, 1) for h in HEADS})
        # spread of each signal, set from the first samples: heads learn targets of size ~1
        self.register_buffer("scale", torch.ones(len(HEADS)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(..., F)`` -> (scaled critic values ``(..., 3)``, aux logits ``(..., 3)``)."""
        z = self.torso(x)
        q = torch.cat([self.critic[h](z) for h in HEADS], -1)
        aux = torch.cat([self.aux[h](z) for h in HEADS], -1)
        return q, aux


class RLIVAgent:
    """The RLIV-UA style agent; a `Recommender` and an SB3-like model (``learn``, ``predict``,
    ``save``, ``load``) so that ``recoworld train --algo rliv`` and ``recoworld evaluate
    --policy`` handle it like the SB3 algorithms.

    Args:
        observation_space, action_space: one user's spaces (``Dict`` with ``candidates`` and
            ``user``; ``Discrete`` or ``MultiDiscrete`` indices).
        args: `RLIVArgs` (defaults when None).
        seed: seeds the initial weights (under `torch.random.fork_rng`, so torch's global
            random state is left as it was) and the agent's numpy generator.
        device: torch device.
        env: an SB3 `VecEnv` to train on (optional: a loaded agent only acts).
    """

    def __init__(
        self,
        observation_space: Any,
        action_space: Any,
        args: RLIVArgs | None = None,
        *,
        seed: int = 0,
        device: str = "cpu",
        env: Any = None,
    ) -> None:
        from gymnasium import spaces

        self.args = args or RLIVArgs()
        self.observation_space, self.action_space = observation_space, action_space
        if isinstance(action_space, spaces.Discrete):
            self.k, self.slate_size = int(action_space.n), 1
        elif isinstance(action_space, spaces.MultiDiscrete):
            self.k, self.slate_size = int(action_space.nvec[0]), int(action_space.nvec.shape[0])
        else:
            raise ConfigError(
                f"action space {action_space} is not Discrete/MultiDiscrete; RLIV picks "
                "candidate indices (use action_type='indices')"
            )
        self.in_dim = int(observation_space["candidates"].shape[1]) + int(
            observation_space["user"].shape[0]
        )
        self.seed = seed
        self.device = torch.device(device)
        self.gen = np.random.default_rng(seed)  # all of the agent's sampling (numpy)
        # the initial weights come from ``seed`` without touching torch's global random stream:
        # building an agent must not change what other code draws from torch afterwards
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = RLIVNet(self.in_dim, self.args.hidden).to(self.device)
        self.target = copy.deepcopy(self.net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.args.learning_rate)
        w = torch.tensor(self.args.weights, dtype=torch.float32, device=self.device)
        self._w = w
        mask = [1.0, 1.0, 1.0] if self.args.mtcl else [0.0, 0.0, 1.0]
        self._critic_mask = torch.tensor(mask, device=self.device)
        self.buffer = ReplayBuffer(self.args.buffer_size, self.in_dim)
        self.num_timesteps = 0
        self.n_updates = 0
        self.ep_info_buffer: deque[dict[str, Any]] = deque(maxlen=100)
        self.logger: Any = None
        self.losses: list[float] = []
        self.env: Any = None
        self._last: tuple[dict[str, np.ndarray], list[dict[str, Any]]] | None = None
        self._scaled = False
        self.tracker: PairMeetingTracker | RequestTracker | None = None
        if env is not None:
            self.set_env(env)

    # ---------------------------------------------------------------- construction
    @classmethod
    def for_env(
        cls,
        env_id: str,
        n_envs: int = 16,
        seed: int = 0,
        args: RLIVArgs | None = None,
        device: str = "cpu",
        **env_kwargs: Any,
    ) -> RLIVAgent:
        """An agent with its own training env: ``n_envs`` users of ``env_id`` (slot ``i``
        seeded ``seed + i``)."""
        from recoworld.agents.sb3.vec_env import to_sb3_vec_env

        env = to_sb3_vec_env(env_id, n_envs, seed, **env_kwargs)
        return cls(env.observation_space, env.action_space, args, seed=seed, device=device, env=env)

    def set_env(self, env: Any) -> None:
        """Train on ``env`` (an SB3 `VecEnv` over a recoworld vector env of UserAuthor-v0).

        Raises:
            ConfigError: the env has no catalog, or its candidates lack the user–author pair
                columns (an env whose core cannot be inspected is checked at the first reset
                and step instead: its infos must carry ``followed`` and ``gifted``).
        """
        catalog = env.get_attr("catalog", [0])[0]
        if catalog is None:
            raise ConfigError("the env exposes no catalog; RLIV needs the items' authors")
        self._check_pair_env(env)
        self.env = env
        self.creator = np.asarray(catalog.creator, np.int64)
        self.n_authors = int(self.creator.max()) + 1
        self._last, self.tracker = None, None  # a new env starts from its reset

    @staticmethod
    def _check_pair_env(env: Any) -> None:
        """Refuse an env without UserAuthor-v0's user–author features (`NOT_A_PAIR_ENV`)."""
        from recoworld.envs.user_author import PairObservationBuilder

        try:
            builder = getattr(env.get_attr("core", [0])[0], "obs_builder", None)
        except AttributeError:  # not a recoworld core: `_rollout` checks the infos instead
            return
        if not isinstance(builder, PairObservationBuilder):
            raise ConfigError(NOT_A_PAIR_ENV.format(what="candidates without pair columns"))

    def get_env(self) -> Any:
        return self.env

    def get_vec_normalize_env(self) -> None:
        """No observation normalisation to synchronise (SB3's EvalCallback asks)."""
        return None

    def set_logger(self, logger: Any) -> None:
        self.logger = logger

    # ---------------------------------------------------------------------- acting
    def inputs(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``(n, K, F)`` float32 state rows: each candidate row with the user's features
        (`state_rows`)."""
        return state_rows(obs)

    def _score_tensor(self, q: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
        a, w = self.args, self._w
        immediate = torch.sigmoid(aux)
        if a.mode == "myopic":
            return (w * immediate).sum(-1)
        value = q * self.net.scale  # natural units: discounted count of each signal
        if a.mtcl:
            return (w * value).sum(-1)
        score = w[2] * value[..., 2]
        if a.aux:
            score = score + (w[:2] * immediate[..., :2]).sum(-1)
        return score

    @torch.no_grad()
    def scores_of(self, x: np.ndarray) -> np.ndarray:
        """``(n, K)`` actor scores of state rows ``x`` ``(n, K, F)``."""
        q, aux = self.net(torch.as_tensor(x, device=self.device))
        return self._score_tensor(q, aux).cpu().numpy()

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any] | None = None) -> np.ndarray:
        """``(n, K)`` candidate scores (the Recommender protocol's optional ``score``)."""
        return self.scores_of(self.inputs(obs))

    def _slate(self, scores: np.ndarray, eps: float) -> np.ndarray:
        """``(n, L)`` indices of the top candidates; with ``eps > 0`` each candidate jumps into
        the slate with probability ``eps * L / K`` (random exploration over slots)."""
        if eps > 0:
            promote = self.gen.random(scores.shape) < eps * self.slate_size / self.k
            scores = np.where(promote, 1e9 + self.gen.random(scores.shape), scores)
        return np.argsort(-scores, axis=1, kind="stable")[:, : self.slate_size]

    def _format(self, slate: np.ndarray) -> np.ndarray:
        return slate[:, 0] if self.slate_size == 1 else slate

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """SB3's ``predict``: batched actions ``(n, L)`` (``(n,)`` for one slot). A single
        user's observation gives a single action."""
        single = np.asarray(observation["candidates"]).ndim == 2
        eps = 0.0 if deterministic else self.args.eps_end
        action = self._format(self._slate(self.score(observation), eps))
        return (action[0] if single else action), None

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        """The greedy slate (deterministic: propensity 1)."""
        slate = self._slate(self.score(obs), 0.0)
        return Recommendation(self._format(slate), np.ones(slate.shape), True)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless between requests (the pair history is in the observation)."""

    # ---------------------------------------------------------------------- update
    def _set_scale(self) -> None:
        """Each head's target is divided by the spread of its signal in the first samples,
        floored at `MIN_SCALE`: a signal rarer than about 1 in 1000 meetings (often none in
        the first samples) counts as that rare, so that its first event does not swamp the
        loss."""
        r = self.buffer.r[: self.buffer.size]
        scale = np.maximum(r.std(0), MIN_SCALE) if r.size else np.ones(3)
        self.net.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
        self.target.scale.copy_(self.net.scale)
        self._scaled = True

    def gradient_step(self, batch: Transitions | None = None) -> float:
        """One gradient step on ``batch`` (a replay sample when None); returns the loss."""
        a = self.args
        if not self._scaled:
            self._set_scale()
        b = batch if batch is not None else self.buffer.sample(a.batch_size, self.gen)
        dev = self.device
        s, r = torch.as_tensor(b.s, device=dev), torch.as_tensor(b.r, device=dev)
        s2, done = torch.as_tensor(b.s2, device=dev), torch.as_tensor(b.done, device=dev)
        q, aux = self.net(s)
        loss = torch.zeros((), device=dev)
        if a.mode != "myopic":
            with torch.no_grad():
                q2, _ = self.target(s2)
                y = r / self.net.scale + a.gamma * (1.0 - done)[:, None] * q2
            loss = loss + ((q - y) ** 2 * self._critic_mask).sum(-1).mean()
        if a.aux:
            bce = F.binary_cross_entropy_with_logits(aux, (r > 0).float(), reduction="none")
            loss = loss + a.aux_weight * bce.sum(-1).mean()
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
        self.opt.step()
        with torch.no_grad():
            for p, tp in zip(self.net.parameters(), self.target.parameters(), strict=True):
                tp.mul_(1.0 - a.tau).add_(a.tau * p)
        self.n_updates += 1
        value = float(loss.item())
        self.losses.append(value)
        return value

    def _tracker(self, n: int) -> PairMeetingTracker | RequestTracker:
        return make_tracker(self.args.mode, n, self.n_authors, self.slate_size, self.in_dim)

    # -------------------------------------------------------------------- the loop
    def _rollout(self, n_steps: int, behaviour: Any, on_step: Any) -> None:
        """Step ``self.env`` for ``n_steps`` user-steps, building samples as it goes.

        ``behaviour(obs, infos)`` (``infos``: one dict per user, the info each user's current
        observation came with) gives the exploration rate of this agent's actor, or a slate
        ``(n, L)`` of a logging policy; ``on_step(samples, infos)`` returns False to stop.
        """
        env = self.env
        if env is None:
            raise ConfigError("this agent has no env; use set_env(env) or RLIVAgent.for_env")
        n = env.num_envs
        if self._last is None or self.tracker is None:
            obs = env.reset()
            now = list(env.unwrapped.reset_infos)
            _check_pair_info(now[0])
            self.tracker = self._tracker(n)
        else:
            obs, now = self._last
        tracker = self.tracker
        done_steps = 0
        while done_steps < n_steps:
            x = self.inputs(obs)
            cand = np.stack([i["candidate_ids"] for i in now])
            act = behaviour(obs, now)
            if isinstance(act, np.ndarray):  # a given slate (a logging policy)
                slate = act.reshape(n, self.slate_size).astype(np.int64)
            else:
                slate = self._slate(self.scores_of(x), float(act))
            obs, _, dones, infos = env.step(self._format(slate))
            _check_pair_info(infos[0])
            shown = np.stack([np.atleast_1d(i["slate_ids"]) for i in infos])
            clicks = np.stack([np.atleast_1d(i["clicks"]) for i in infos]).astype(bool)
            followed = np.array([bool(i["followed"]) for i in infos])
            gifted = np.array([bool(i["gifted"]) for i in infos])
            signals = np.stack(
                [clicks, clicks & followed[:, None], clicks & gifted[:, None]], -1
            ).astype(np.float32)
            samples = tracker.step(
                x, self.creator[cand], slate, signals, shown >= 0, np.asarray(dones, bool)
            )
            # a finished user's info is its last step's; the next observation is a new user's
            resets = env.unwrapped.reset_infos
            now = [resets[i] if d else infos[i] for i, d in enumerate(dones)]
            done_steps += n
            for info in infos:
                if "episode" in info:
                    self.ep_info_buffer.append(info["episode"])
            if on_step(samples, infos) is False:
                break
        self._last = (obs, now)

    def learn(
        self,
        total_timesteps: int,
        callback: Any = None,
        log_interval: int = 100,
        progress_bar: bool = False,
        reset_num_timesteps: bool = True,
    ) -> RLIVAgent:
        """Train online for ``total_timesteps`` user-steps (SB3's ``learn``; SB3 callbacks
        such as ``EvalCallback`` and ``CheckpointCallback`` work)."""
        a = self.args
        if not isinstance(total_timesteps, int) or total_timesteps < 1:
            raise ConfigError(f"total_timesteps={total_timesteps!r} must be a positive integer")
        if self.logger is None:
            from stable_baselines3.common.logger import Logger

            self.logger = Logger(None, [])
        if callback is not None:
            from stable_baselines3.common.callbacks import CallbackList

            callback = CallbackList(callback) if isinstance(callback, list) else callback
            callback.init_callback(self)
            callback.on_training_start(locals(), globals())
        start_steps, start = self.num_timesteps, time.monotonic()
        decay = max(a.eps_fraction * total_timesteps, 1.0)
        calls = 0

        def explore(obs: Any, infos: Any) -> float:
            frac = min((self.num_timesteps - start_steps) / decay, 1.0)
            return a.eps_start + frac * (a.eps_end - a.eps_start)

        def on_step(samples: Transitions, infos: list[dict[str, Any]]) -> bool:
            nonlocal calls
            self.buffer.add(samples)
            self.num_timesteps += self.env.num_envs
            calls += 1
            if self.buffer.size >= max(a.learning_starts, 1) and calls % a.train_freq == 0:
                for _ in range(a.gradient_steps):
                    self.gradient_step()
            if self.logger is not None and calls % log_interval == 0:
                self.logger.record("time/fps", self.num_timesteps / (time.monotonic() - start))
                if self.losses:
                    self.logger.record("train/loss", float(np.mean(self.losses[-100:])))
                if self.ep_info_buffer:
                    rs = [e["r"] for e in self.ep_info_buffer]
                    self.logger.record("rollout/ep_rew_mean", float(np.mean(rs)))
                self.logger.dump(self.num_timesteps)
            if callback is not None:
                callback.update_locals({"infos": infos, "samples": samples})
                return bool(callback.on_step())
            return True

        if callback is not None:
            callback.on_rollout_start()
        self._rollout(total_timesteps, explore, on_step)
        if callback is not None:
            callback.on_rollout_end()
            callback.on_training_end()
        return self

    # --------------------------------------------------------------------- offline
    def record(self, n_steps: int, recommender: Any = None) -> Transitions:
        """Samples from ``n_steps`` user-steps of ``self.env`` under a logging policy: the
        request log turned into this agent's samples (ASA for ``rliv``) as it is served, to
        save (`Transitions.save`, ``.npz``) and train on offline with `fit_offline`.

        Args:
            n_steps: user-steps to record (all users of the env together).
            recommender: any `Recommender`; this agent's greedy policy when None. It gets each
                request's observation and the env's real info of that request (batched over
                users: ``user_id``, ``instruction``, ``candidate_ids`` ...), as a vector env
                gives it, and is ``reset(mask)`` for the users whose episode ended.

        Returns:
            The samples (`Transitions`, rows of width ``in_dim``).
        """
        if not isinstance(n_steps, numbers.Integral) or isinstance(n_steps, bool) or n_steps < 1:
            raise ConfigError(f"n_steps={n_steps!r} must be a positive integer")
        parts: list[Transitions] = []

        def act(obs: dict[str, np.ndarray], infos: list[dict[str, Any]]) -> Any:
            if recommender is None:
                return 0.0
            return np.asarray(recommender.recommend(obs, batch_infos(infos)).action)

        def keep(samples: Transitions, infos: list[dict[str, Any]]) -> None:
            parts.append(samples)
            ended = np.array(["terminal_observation" in i for i in infos])
            if recommender is not None and ended.any() and hasattr(recommender, "reset"):
                recommender.reset(ended)

        self._rollout(int(n_steps), act, keep)
        return Transitions.concat(parts, self.in_dim)

    def fit_offline(self, data: Transitions | str | Path, n_updates: int) -> float:
        """Train on recorded samples without stepping the env: ``n_updates`` minibatch updates.

        "Offline from recorded trajectories" means here: samples that `record` built from any
        logging recommender's run of UserAuthor-v0, with the per-candidate features (pair
        columns included) as they were served, kept as `Transitions` or saved to / loaded from
        an ``.npz`` (`Transitions.save`); or the same samples rebuilt from a Parquet request log
        in the log schema by `recoworld.agents.rliv_logs.samples_from_log` (the log needs the
        optional ``followed`` / ``gifted`` columns, which `write_request_log` writes).

        The samples are *added* to the replay buffer (online samples already there stay; the
        buffer grows to hold them all if needed), and updates draw from all of it. Head scales
        (`_set_scale`) are set once: an agent that has trained already keeps its scales, so
        its values stay in the same units; a fresh agent sets them from the buffer.

        Args:
            data: `Transitions` or the path of an ``.npz`` written by `Transitions.save`.
            n_updates: gradient steps, at least 1.

        Returns:
            The mean loss of the last ``min(100, n_updates)`` updates.
        """
        if (
            not isinstance(n_updates, numbers.Integral)
            or isinstance(n_updates, bool)
            or n_updates < 1
        ):
            raise ConfigError(
                f"n_updates={n_updates!r} must be a positive integer (gradient steps)"
            )
        t = Transitions.load(str(data)) if isinstance(data, (str, Path)) else data
        if len(t) == 0:
            raise ConfigError("no samples to train on; record some steps first")
        if t.s.shape[1] != self.in_dim:
            raise ConfigError(
                f"samples have {t.s.shape[1]} features but this agent takes {self.in_dim}; "
                "record them with an env made with the same arguments"
            )
        if self.buffer.size + len(t) > self.buffer.capacity:
            self.buffer = self.buffer.grown(self.buffer.size + len(t))
        self.buffer.add(t)
        for _ in range(int(n_updates)):
            self.gradient_step()
        return float(np.mean(self.losses[-min(100, int(n_updates)) :]))

    # ------------------------------------------------------------------- save/load
    def save(self, path: str | Path) -> None:
        """Write a zip (SB3's format: ``data`` with the spaces and arguments, ``net.pth``)."""
        from stable_baselines3.common.save_util import save_to_zip_file

        data = {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "rliv_args": {f.name: getattr(self.args, f.name) for f in fields(self.args)},
            "num_timesteps": self.num_timesteps,
            "seed": self.seed,
        }
        data["rliv_args"]["weights"] = list(self.args.weights)
        save_to_zip_file(path, data=data, params={"net": self.net.state_dict()})

    @classmethod
    def load(cls, path: str | Path, env: Any = None, device: str = "cpu") -> RLIVAgent:
        """Read a saved agent (``env``, optional, to go on training)."""
        from stable_baselines3.common.save_util import load_from_zip_file

        data, params, _ = load_from_zip_file(path, device=device)
        if not data or "rliv_args" not in data:
            raise ConfigError(f"{path} was not written by RLIVAgent.save")
        kw = dict(data["rliv_args"])
        kw["weights"] = tuple(kw["weights"])
        agent = cls(
            data["observation_space"],
            data["action_space"],
            RLIVArgs(**kw),
            seed=int(data.get("seed", 0)),
            device=device,
            env=env,
        )
        state: Any = params["net"]
        agent.net.load_state_dict(state)
        agent.target.load_state_dict(state)
        agent.num_timesteps = int(data.get("num_timesteps", 0))
        agent._scaled = True
        return agent


# ------------------------------------------------------------------ registration
def _make_rliv(
    env: Any,
    *,
    seed: int = 0,
    total_timesteps: int = 0,
    policy: Any = None,
    policy_kwargs: Any = None,
    device: str = "cpu",
    verbose: int = 0,
    **algo_kwargs: Any,
) -> RLIVAgent:
    if policy is not None or policy_kwargs:
        raise ConfigError("rliv has its own network; set its width with --algo-arg hidden=N")
    known = {f.name for f in fields(RLIVArgs)}
    unknown = sorted(set(algo_kwargs) - known)
    if unknown:
        raise ConfigError(f"unknown rliv arguments {unknown}; choose from {sorted(known)}")
    args = RLIVArgs(**algo_kwargs)
    return RLIVAgent(
        env.observation_space, env.action_space, args, seed=seed, device=device, env=env
    )


def _load_rliv(path: Path, device: str) -> RLIVAgent:
    return RLIVAgent.load(path, device=device)


def _register() -> None:
    from recoworld.agents.sb3.train import register_algorithm

    register_algorithm(
        "rliv",
        _make_rliv,
        _load_rliv,
        "RLIV-UA style agent (SCRI-MDP, ASA, multi-task critic, auxiliary task); "
        "--algo-arg mode=myopic|request, mtcl=False, aux=False give the baselines",
    )


_register()

__all__ = ["HEADS", "MODES", "RLIVAgent", "RLIVArgs", "RLIVNet"]
