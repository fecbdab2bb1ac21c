"""`ReplayEnv` (``recoworld/Replay-v0``): logged sessions replayed as a Gymnasium env."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from recoworld import rng
from recoworld.catalog import Catalog
from recoworld.envs.config import EnvConfig
from recoworld.envs.core import World
from recoworld.envs.observation import ObservationBuilder
from recoworld.envs.rewards import RewardWeights
from recoworld.envs.vector import vector_args
from recoworld.errors import ConfigError, ReplayDataError
from recoworld.replay.loaders import Sessions, load_sessions
from recoworld.types import Feedback
from recoworld.users.parametric import ParametricUser
from recoworld.users.population import Population
from recoworld.users.sessions import start_sessions
from recoworld.users.state import UserState

ENV_ID = "recoworld/Replay-v0"
MATCH_RULES = ("first", "slate")
ORDERS = ("random", "sequential")


def log_catalog(sessions: Sessions, *, dim: int = 32, n_topics: int = 20, seed: int = 0) -> Catalog:
    """A minimal catalog for the item ids of a log (``0 .. max id``).

    Embeddings are a deterministic random projection of the item id: the one-hot id times a
    fixed Gaussian matrix drawn from ``seed`` (row ``i`` of that matrix, normalised), so items
    are distinct, unrelated directions. Topic: the nearest of ``n_topics`` random directions
    (also from ``seed``). Popularity: how often the item was shown in the log, plus one.
    Length: the median of ``watch_time / watch_fraction`` over the item's clicks, where the log
    has watch data, else the median over all items (1.0 when none). Quality: 0.5 (unknown).

    Args:
        sessions: the log.
        dim: embedding dimension.
        n_topics: topics (at most the number of items).
        seed: seed of the projection.
    """
    ids = [sessions.candidate_ids, sessions.slate_ids, sessions.clicked[:, None]]
    n_items = int(max(int(a.max()) for a in ids)) + 1
    g = np.random.default_rng(seed)
    emb = g.standard_normal((n_items, dim))
    centres = g.standard_normal((min(n_topics, n_items), dim))
    topic = np.argmax(emb @ centres.T, axis=1)
    _, topic = np.unique(topic, return_inverse=True)  # topic ids 0 .. used - 1
    shown = sessions.slate_ids[sessions.slate_ids >= 0]
    popularity = np.bincount(shown, minlength=n_items) + 1.0
    has = (sessions.clicked >= 0) & (sessions.watch_fraction > 0) & (sessions.watch_time > 0)
    length = np.full(n_items, np.nan)
    if has.any():
        item, obs = sessions.clicked[has], sessions.watch_time[has] / sessions.watch_fraction[has]
        by_item = np.argsort(item, kind="stable")
        item, obs = item[by_item], obs[by_item]
        starts = np.flatnonzero(np.concatenate([[True], item[1:] != item[:-1]]))
        for lo, hi in zip(starts, [*starts[1:], item.size], strict=True):  # one per clicked item
            length[item[lo]] = np.median(obs[lo:hi])
    fill = float(np.nanmedian(length)) if has.any() else 1.0
    length = np.where(np.isnan(length), fill, length)
    table = {"topic": topic, "popularity": popularity, "length": length}
    return Catalog.from_table(table, embeddings=emb)


@dataclass
class ReplayStats:
    """Running totals of the replay method since the env was last reset with a seed.

    Attributes:
        steps: logged steps replayed. matched: steps that counted. reward: their reward.
    """

    steps: int = 0
    matched: int = 0
    reward: float = 0.0

    @property
    def match_rate(self) -> float:
        return self.matched / self.steps if self.steps else float("nan")

    @property
    def value(self) -> float:
        """The replay estimate of the policy's reward per step (Li et al., 2011)."""
        return self.reward / self.matched if self.matched else float("nan")


class ReplayEnv(gym.Env[dict[str, np.ndarray], Any]):
    """Logged sessions, replayed: the recommender chooses from the candidates of the log.

    ## Description
    Each episode is one logged session. Each step shows the candidates the log recorded
    (``candidate_ids``); the agent picks a slate from them.

    Without a user model the replay method of Li et al. (2011, "Unbiased offline evaluation
    of contextual-bandit-based news article recommendation algorithms") scores it: a step
    *counts* (``info["matched"]``) when the agent's choice matches what was logged — with
    ``match="first"`` (the default) when the first slot holds the logged first item (for
    slates of one, the whole choice), with ``match="slate"`` when every slot equals the logged
    slate. A counted step earns the logged reward; any other step earns 0. Either way the log
    moves on to its next step, so the user's history is always the logged one. The mean reward
    over counted steps (`ReplayStats.value`) is an unbiased estimate of the policy's reward per
    step when the logging policy chose uniformly at random among the candidates (a match then
    happens with probability 1/K per step whatever the policy does) and the logged steps are
    independent of each other given what the policy observes; with ``match="first"`` and
    slates, it estimates the value of the policy's *top* item, assuming the rest of the slate
    does not change the feedback. The estimate needs about K times more logged steps than
    on-policy evaluation for the same precision. It scores each step on its own: the logged
    user saw the logged slates, so what a policy would have changed in the user's later steps,
    sessions and returns is not measured (use a simulated user for that). A policy that learns
    must learn from counted steps only.

    With ``user_model=`` a simulated user (e.g. one calibrated from the log) answers instead:
    the episode is one simulated session of a user sampled for the logged user id; the
    candidates are the logged session's while they last, then drawn as in the other recoworld
    envs; the reward is that user's feedback (`RewardWeights`).

    ## Action Space
    ``Discrete(K)`` when the log's slates have one slot, else ``MultiDiscrete([K] * L)``, with
    K and L the widest candidate list and slate of the log; ``action_type="scores"`` gives
    ``Box(-1, 1, (K,))`` (the top-L candidates by score are shown).

    ## Observation Space
    As the other recoworld envs: ``Dict(candidates=Box(K, dim + 5), user=Box(9 + n_topics +
    dim), instruction=Box(4 + 2 dim + 1))``, from the catalog and the user's logged history
    (its earlier sessions in the log included). Padded candidate slots (ragged logs) are zeros.

    ## Rewards
    Replay: the logged ``reward`` on a counted step, else 0. User model: `RewardWeights`.

    ## Starting State
    A logged session: drawn uniformly with ``order="random"`` (the default), or the next one
    in log order with ``order="sequential"`` (a seed restarts at the first), or
    ``options={"session_index": i}``.

    ## Episode End
    Replay: after the session's last logged step, terminated when the user left or churned
    there, else truncated. User model: terminated when the user leaves, truncated at
    ``max_episode_steps``.

    ## Info
    The keys of the other recoworld envs, where ``slate_ids`` is the agent's slate and
    ``clicks``/``clicked``/``watch_time`` the feedback credited to it (on a counted step, the
    logged clicks at the slots that hold the logged item; else none). Replay adds ``matched``,
    ``logged_slate_ids``, ``logged_clicks``, ``logged_reward`` and ``propensity`` (the logged
    slate's logging propensities); a user model adds ``logged_candidates`` (whether the
    candidates came from the log). ``env.unwrapped.stats`` (`ReplayStats`) keeps the totals of
    the replay method since the last seeded reset.

    ## Arguments
    ``log_path`` (a log file or folder for `load_sessions`) or ``sessions`` (a loaded log);
    ``catalog`` (default `log_catalog`); ``user_model`` (a preset name, `ParametricUser` or
    `Population`); ``recommender`` (replay only that recommender's rows); ``match``; ``order``;
    ``action_type``; ``rewards``; ``max_episode_steps``; ``dim``, ``n_topics`` (of the
    minimal catalog).

    ## Version History
    - v0: initial release.

    Example:
        >>> import gymnasium as gym, recoworld
        >>> env = gym.make(
        ...     "recoworld/Replay-v0", log_path="runs/x/trajectories/random"
        ... )  # doctest: +SKIP
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        log_path: str | os.PathLike[str] | None = None,
        *,
        sessions: Sessions | None = None,
        catalog: Catalog | None = None,
        user_model: str | ParametricUser | Population | None = None,
        recommender: str | None = None,
        match: str = "first",
        order: str = "random",
        action_type: str = "indices",
        rewards: RewardWeights | None = None,
        max_episode_steps: int | None = 1000,
        dim: int = 32,
        n_topics: int = 20,
        render_mode: str | None = None,
    ) -> None:
        if (log_path is None) == (sessions is None):
            raise ConfigError("give exactly one of log_path= (a log file or folder) or sessions=")
        if match not in MATCH_RULES or order not in ORDERS:
            raise ConfigError(
                f"match={match!r}, order={order!r}; choose match from {MATCH_RULES} and "
                f"order from {ORDERS}"
            )
        n_items = catalog.n_items if catalog is not None else None
        if sessions is None:
            sessions = load_sessions(log_path, n_items=n_items, recommender=recommender)  # type: ignore[arg-type]
        elif recommender is not None:
            sessions = sessions.take(np.flatnonzero(sessions.recommender == recommender))
        if sessions.n_steps == 0:
            raise ReplayDataError("the log has no steps to replay")
        self.sessions = sessions
        self.catalog = (
            catalog if catalog is not None else log_catalog(sessions, dim=dim, n_topics=n_topics)
        )
        self._check_items()
        self.bounds = sessions.session_bounds()
        self.n_sessions = self.bounds.size - 1
        k, slate_size = sessions.candidate_ids.shape[1], sessions.slate_ids.shape[1]
        self.config = EnvConfig(
            users=user_model if user_model is not None else "engagement",
            catalog=self.catalog,
            num_candidates=k,
            slate_size=slate_size,
            action_type=action_type,
            horizon_days=int(sessions.day.max()) + 1,
            max_episode_steps=max_episode_steps,
            rewards=rewards if rewards is not None else RewardWeights(),
        )
        self.world = World(self.config)
        self.obs_builder = ObservationBuilder(self.catalog, k, self.config.horizon_days)
        self.action_space = self.world.action_space
        self.observation_space = self.obs_builder.space()  # type: ignore[assignment]
        self.simulated = user_model is not None
        self.match, self.order = match, order
        self.render_mode = render_mode
        self.stats = ReplayStats()
        # first row of each session's (recommender, user) block, for the user's history
        rec, user = sessions.recommender, sessions.user_id
        starts = self.bounds[:-1]
        new_block = np.ones(self.n_sessions, bool)
        new_block[1:] = (rec[starts[1:]] != rec[starts[:-1]]) | (
            user[starts[1:]] != user[starts[:-1]]
        )
        self.block_start = starts[
            np.maximum.accumulate(np.where(new_block, np.arange(self.n_sessions), 0))
        ]
        self._cursor = 0
        self._rows = np.zeros(0, np.int64)
        self._t = 0
        self._state: UserState | None = None
        self._cand = np.zeros(k, np.int64)
        self._history: tuple[int, int, UserState] | None = None  # (block, next row, state)
        self._needs_reset = True

    def _check_items(self) -> None:
        s, n = self.sessions, self.catalog.n_items
        top = max(int(s.candidate_ids.max()), int(s.slate_ids.max()), int(s.clicked.max()))
        if top >= n:
            raise ReplayDataError(
                f"the log shows item {top} but the catalog has {n} items; give the log's catalog"
            )

    # ------------------------------------------------------------------- reset
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:  # a seed restarts the replay
            self._cursor = 0
            self.stats = ReplayStats()
        if options and "session_index" in options:
            i = int(options["session_index"])
            if not 0 <= i < self.n_sessions:
                raise ConfigError(f"session_index={i} is outside [0, {self.n_sessions})")
        elif self.order == "random":
            i = int(self.np_random.integers(self.n_sessions))
        else:
            i, self._cursor = self._cursor % self.n_sessions, self._cursor + 1
        lo, hi = int(self.bounds[i]), int(self.bounds[i + 1])
        self._rows, self._t = np.arange(lo, hi), 0
        s = self.sessions
        if self.simulated:
            keys = rng.user_keys(int(self.np_random.integers(2**62)), s.user_id[lo : lo + 1])
            self._state = self.world.sample_users(keys, s.user_id[lo : lo + 1].copy())
            self._state.session[:], self._state.day[:] = s.session[lo], s.day[lo]
        else:
            self._state = self._logged_history(int(self.block_start[i]), lo)
        self._cand = s.candidate_ids[lo].astype(np.int64)
        self._needs_reset = False
        info = _row(self.world.start_info(self._state, self._cand[None]))
        info["dt_days"] = int(s.day[lo] - s.day[lo - 1]) if lo > self.block_start[i] else 0
        return self._observe(), info

    def _logged_history(self, block: int, row: int) -> UserState:
        """The observable state of the user after its logged rows ``block .. row - 1``."""
        if self._history is not None and self._history[0] == block and self._history[1] <= row:
            _, start, state = self._history
        else:
            s = self.sessions
            keys = rng.user_keys(0, s.user_id[block : block + 1])
            state, start = self.world.sample_users(keys, s.user_id[block : block + 1].copy()), block
        for r in range(start, row):
            self._apply_logged(state, r)
        self._enter(state, row)
        self._history = (block, row, state)
        return state

    def _enter(self, state: UserState, r: int) -> None:
        """Set the state's clock to logged row ``r`` (a new session restarts its counters)."""
        s = self.sessions
        if state.session[0] != s.session[r] or state.day[0] != s.day[r]:
            start_sessions(state, np.zeros(1, np.int64))
        state.session[0], state.day[0], state.step[0] = s.session[r], s.day[r], s.step[r]

    def _apply_logged(self, state: UserState, r: int) -> None:
        """Move the observable history through logged row ``r`` with the user model's own
        transition rule (the hidden fields it also moves are never observed)."""
        s = self.sessions
        self._enter(state, r)
        clicks = s.clicks[r][None]
        fraction = np.where(clicks, s.watch_fraction[r], np.float32(0))
        fb = Feedback(
            clicks=clicks,
            watch_fraction=fraction,
            watch_time=np.where(clicks, s.watch_time[r], np.float32(0)),
            likes=clicks & s.liked[r],
            leave=s.left[r : r + 1].copy(),
            ignored=np.zeros(1, bool),
            instruction_kind=s.instruction_kind[r : r + 1].copy(),
            instruction_topic=np.full(1, -1, np.int32),
            instruction_item=np.full(1, -1, np.int32),
        )
        self.world.users.transition(state, s.slate_ids[r][None].astype(np.int64), fb, self.catalog)

    # -------------------------------------------------------------------- step
    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._needs_reset or self._state is None:
            raise ResetNeeded("the episode has ended or not started; call reset() before step()")
        slate, repeats = self.world.slate(np.asarray(action)[None], self._cand[None])
        if self.simulated:
            out = self._step_simulated(slate, int(repeats[0]))
        else:
            out = self._step_replay(slate[0], int(repeats[0]))
        self._needs_reset = out[2] or out[3]
        return out

    def _step_replay(
        self, slate: np.ndarray, repeats: int
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        s, r = self.sessions, int(self._rows[self._t])
        logged, exists = s.slate_ids[r], ~np.isnan(s.propensity[r])
        same = (slate == logged) & exists
        matched = bool(same[0]) if self.match == "first" else bool((same | ~exists).all())
        clicks = s.clicks[r] & same if matched else np.zeros(slate.size, bool)
        reward = float(s.reward[r]) if matched else 0.0
        self.stats.steps += 1
        self.stats.matched += matched
        self.stats.reward += reward
        assert self._state is not None
        self._apply_logged(self._state, r)
        self._t += 1
        last = self._t == self._rows.size
        terminated = last and bool(s.left[r] or s.churned[r])
        if not last:
            self._enter(self._state, int(self._rows[self._t]))
            self._cand = s.candidate_ids[self._rows[self._t]].astype(np.int64)
        self._history = (self._history[0], r + 1, self._state) if self._history else None
        credited = bool(clicks.any())
        info = {  # the keys of World.record, with the feedback credited to the agent's slate
            "user_id": int(s.user_id[r]),
            "session": int(s.session[r]),
            "day": int(s.day[r]),
            "slate_ids": slate.astype(np.int64),
            "clicks": clicks,
            "clicked": int(slate[np.argmax(clicks)]) if credited else -1,
            "watch_time": float(s.watch_time[r]) if credited else 0.0,
            "watch_fraction": float(s.watch_fraction[r]) if credited else 0.0,
            "liked": credited and bool(s.liked[r]),
            "left": bool(s.left[r]),
            "return_days": int(s.return_days[r]) if s.left[r] else -1,
            "churned": bool(s.churned[r]),
            "instruction": str(s.instruction[r]),
            "instruction_kind": int(s.instruction_kind[r]),
            "dt_days": 0,
            "candidate_ids": self._cand.copy(),
            "repeats": repeats,
        }
        info.update(
            matched=matched,
            logged_slate_ids=logged.astype(np.int64),
            logged_clicks=s.clicks[r].copy(),
            logged_reward=float(s.reward[r]),
            propensity=s.propensity[r].astype(np.float64),
        )
        return self._observe(), reward, terminated, last and not terminated, info

    def _step_simulated(
        self, slate: np.ndarray, repeats: int
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        state, world = self._state, self.world
        assert state is not None
        res = world.advance(state, slate)
        record = world.record(state, res)
        reward = float(record.pop("reward")[0])
        self._t += 1
        terminated = bool(res.feedback.leave[0])
        cap = self.config.max_episode_steps
        truncated = cap is not None and self._t >= cap
        logged = self._t < self._rows.size
        if logged:
            self._cand = self.sessions.candidate_ids[self._rows[self._t]].astype(np.int64)
        else:
            self._cand = world.candidates(state)[0].astype(np.int64)
        info = _row(record)
        info.update(
            dt_days=0, candidate_ids=self._cand.copy(), repeats=repeats, logged_candidates=logged
        )
        return self._observe(), reward, terminated, bool(truncated), info

    # ----------------------------------------------------------------- helpers
    def _observe(self) -> dict[str, np.ndarray]:
        assert self._state is not None
        obs = self.obs_builder.build(self._state, self._cand[None])
        out = {k: v[0] for k, v in obs.items()}
        out["candidates"][self._cand < 0] = 0.0  # padding of a ragged log
        return out


def _row(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """Row 0 of a batched info: arrays for per-slot fields, Python scalars otherwise."""
    return {k: v[0].item() if isinstance(v[0], np.generic) else v[0] for k, v in batch.items()}


def make_replay_vector_env(
    num_envs: int = 1,
    autoreset_mode: str | AutoresetMode = "next_step",
    max_episode_steps: int | None = None,
    **kwargs: Any,
) -> SyncVectorEnv:
    """``num_envs`` `ReplayEnv` sharing one loaded log, as a `SyncVectorEnv`: sub-env ``i``
    reset with seed ``s`` behaves as a `ReplayEnv` reset with ``s + i``. The vector entry point
    of ``recoworld/Replay-v0``."""
    mode = vector_args(num_envs, autoreset_mode)
    if kwargs.get("sessions") is None and kwargs.get("log_path") is not None:
        catalog = kwargs.get("catalog")
        kwargs["sessions"] = load_sessions(
            kwargs.pop("log_path"),
            n_items=catalog.n_items if catalog is not None else None,
            recommender=kwargs.pop("recommender", None),
        )
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    first = ReplayEnv(**kwargs)
    kwargs["catalog"] = first.catalog  # built once, shared

    def make(i: int) -> Any:
        return (lambda: first) if i == 0 else (lambda: ReplayEnv(**kwargs))

    return SyncVectorEnv([make(i) for i in range(num_envs)], autoreset_mode=mode)


def register_replay_env() -> None:
    """Register ``recoworld/Replay-v0`` with gymnasium (safe to call more than once)."""
    if ENV_ID in gym.registry:
        return
    gym.register(
        id=ENV_ID,
        entry_point="recoworld.replay.env:ReplayEnv",
        vector_entry_point="recoworld.replay.env:make_replay_vector_env",
    )
