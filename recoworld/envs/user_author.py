"""``recoworld/UserAuthor-v0``: users meet authors; what counts is each pair's lifelong value.

The same batched core as every other id (`UserAuthorCore` is an `EnvCore` with per-pair state),
so the single env is the core with one user and the vector env the core with ``num_envs``.
One step is one *request*: the agent shows a slate, the user's response runs through the
user–author funnel (`recoworld.users.author`): click -> follow -> gift, each more likely for a
deeper pair. Pair state (past clicks, follows, gifts, meetings, the request they last met) is
kept per user and author; the hidden pair affinity never reaches an observation.

Order of a step: slate from action -> funnel response -> the parametric user's transition
(interest drift, click history, so candidates keep following the user's clicks) -> pair state
update -> reward -> candidates -> observation.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from recoworld import rng
from recoworld.envs.config import EnvConfig
from recoworld.envs.core import EnvCore, StepResult
from recoworld.envs.observation import ObservationBuilder
from recoworld.envs.single import RecoEnv
from recoworld.envs.vector import RecoVectorEnv
from recoworld.errors import ConfigError
from recoworld.types import Feedback
from recoworld.users.author import FUNNEL, N_FUNNEL_DRAWS, AuthorFunnel
from recoworld.users.state import UserState

PAIR_COLUMNS = ("pair_clicks", "pair_following", "pair_gifts", "pair_since", "pair_meetings")
"""Per-candidate pair features appended to the ``candidates`` rows, in this order."""
N_PAIR = len(PAIR_COLUMNS)
COUNT_SQUASH = 5.0  # counts c are shown as c / (c + 5)
SINCE_SQUASH = 20.0  # requests since the pair last met, d / (d + 20); 1.0 if never met
DEFAULT_REQUESTS = 200


def whole_number(name: str, value: Any, minimum: int, why: str, default: int) -> int:
    """``value`` as an ``int`` if it is a whole number (a Python or numpy integer, or a float
    such as ``50.0``) of at least ``minimum``; otherwise a `ConfigError` naming it.

    Args:
        name: the argument's name, for the message.
        value: what was given.
        minimum: the smallest accepted value.
        why: what a smaller value breaks, e.g. ``"too short for any pair to meet twice"``.
        default: the default, named in the message's fix.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        n = int(value)
    elif (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and float(value).is_integer()
    ):
        n = int(float(value))
    else:
        raise ConfigError(
            f"{name}={value!r} is not a whole number; give an integer {name} >= {minimum} "
            f"(default {default})"
        )
    if n < minimum:
        raise ConfigError(
            f"{name}={value!r} is {why}; give {name} >= {minimum} (default {default})"
        )
    return n


@dataclass(frozen=True)
class UserAuthorSettings:
    """Arguments of UserAuthor-v0 beyond `EnvConfig`'s.

    Attributes:
        funnel: the `AuthorFunnel` (or a dict of its fields).
        n_requests: requests per episode (200); the episode is truncated after them. A whole
            number (``50``, ``np.int64(50)`` or ``50.0``) of at least 2, so that a pair can meet
            twice; `EnvConfig`'s ``max_episode_steps``, when set, must be at least 2 too.
        reward_click, reward_follow, reward_gift: reward per click, follow and gift (1, 5, 20:
            at the neutral rates 10% / 1% / 0.1% a follow is worth half the clicks of a
            request and a gift a fifth, so no signal swamps the others).
    """

    funnel: AuthorFunnel = field(default_factory=AuthorFunnel)
    n_requests: int = DEFAULT_REQUESTS
    reward_click: float = 1.0
    reward_follow: float = 5.0
    reward_gift: float = 20.0

    def __post_init__(self) -> None:
        if isinstance(self.funnel, dict):
            object.__setattr__(self, "funnel", AuthorFunnel(**self.funnel))
        if not isinstance(self.funnel, AuthorFunnel):
            raise ConfigError(
                f"funnel={self.funnel!r} must be an AuthorFunnel or a dict of its fields"
            )
        n = whole_number(
            "n_requests", self.n_requests, 2, "too short for any user–author pair to meet twice",
            DEFAULT_REQUESTS,
        )  # fmt: skip
        object.__setattr__(self, "n_requests", n)
        for name in ("reward_click", "reward_follow", "reward_gift"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ConfigError(f"{name}={v!r} must be a finite number")

    def horizon(self, max_episode_steps: Any) -> int:
        """Requests per episode given `EnvConfig`'s ``max_episode_steps`` cap (None: no cap);
        a `ConfigError` when fewer than 2, so that no pair could meet twice."""
        if max_episode_steps is None or not isinstance(max_episode_steps, numbers.Real):
            return self.n_requests  # a non-number cap is EnvConfig's to reject
        if max_episode_steps < 2:
            raise ConfigError(
                f"max_episode_steps={max_episode_steps!r} caps the episode below "
                f"n_requests={self.n_requests}: min(n_requests, max_episode_steps) = "
                f"{min(self.n_requests, max_episode_steps)} request(s) is too short for any "
                "user–author pair to meet twice; give max_episode_steps >= 2 (or None) and "
                "n_requests >= 2"
            )
        return min(self.n_requests, int(float(max_episode_steps)))

    @classmethod
    def split(cls, kwargs: dict[str, Any]) -> tuple[UserAuthorSettings, dict[str, Any]]:
        """Separate this class's keyword arguments from `EnvConfig`'s, checking the horizon
        (``min(n_requests, max_episode_steps)``) and the author count."""
        names = {f.name for f in fields(cls)}
        mine = {k: v for k, v in kwargs.items() if k in names}
        rest = {k: v for k, v in kwargs.items() if k not in names}
        if rest.get("catalog") is None and "n_creators" in rest:
            rest["n_creators"] = whole_number(
                "n_creators", rest["n_creators"], 1,
                "fewer than one author (UserAuthor-v0 needs at least one)", 200,
            )  # fmt: skip
        settings = cls(**mine)
        settings.horizon(rest.get("max_episode_steps"))
        return settings, rest

    def reward(self, clicks: np.ndarray, follows: np.ndarray, gifts: np.ndarray) -> np.ndarray:
        """``(n,)`` float32 rewards from ``(n, L)`` per-slot signals."""
        r = (
            self.reward_click * clicks.sum(1)
            + self.reward_follow * follows.sum(1)
            + self.reward_gift * gifts.sum(1)
        )
        return r.astype(np.float32)


class PairObservationBuilder(ObservationBuilder):
    """The usual observation with `N_PAIR` pair columns appended to each candidate row (the
    inherited `space` and `allocate` follow ``cand_dim``; the pair columns lie in [0, 1])."""

    def __init__(self, catalog: Any, k: int, horizon_days: int) -> None:
        super().__init__(catalog, k, horizon_days)
        self.base_dim = self.cand_dim
        self.cand_dim = self.base_dim + N_PAIR

    def build(  # type: ignore[override]
        self,
        state: UserState,
        candidates: np.ndarray,
        out: dict[str, np.ndarray] | None = None,
        *,
        pair: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """As `ObservationBuilder.build`; ``pair`` ``(n, K, N_PAIR)`` fills the last columns."""
        out = self.allocate(state.n) if out is None else out
        base = {**out, "candidates": out["candidates"][:, :, : self.base_dim]}
        super().build(state, candidates, base)
        out["candidates"][:, :, self.base_dim :] = pair
        return out


class UserAuthorCore(EnvCore):
    """`EnvCore` with user–author pair state and the funnel in place of the parametric response.

    Pair arrays have shape ``(n, n_authors)``: clicks, gifts, meetings (int32), following
    (bool), the request index they last met (int32, -1 = never) and the hidden affinity
    (float32). ``n_authors`` is the catalog's creator count, so memory is
    ``n * n_authors * 21`` bytes (2048 users x 200 authors: 8.6 MB).
    """

    def __init__(self, config: EnvConfig, n: int, settings: UserAuthorSettings) -> None:
        super().__init__(config, n)
        self.settings = settings
        self.funnel = settings.funnel
        cat = self.world.catalog
        self.creator = cat.creator.astype(np.int64)
        self.n_authors = cat.n_creators
        self.author_f = self.funnel.author_factors(self.n_authors, config.catalog_seed)
        self.pair_obs = PairObservationBuilder(cat, config.num_candidates, 1)
        self.obs_builder = self.pair_obs  # what the env shells read the space from
        a = self.n_authors
        self.p_clicks = np.zeros((n, a), np.int32)
        self.p_gifts = np.zeros((n, a), np.int32)
        self.p_meets = np.zeros((n, a), np.int32)
        self.p_follow = np.zeros((n, a), bool)
        self.p_last = np.full((n, a), -1, np.int32)
        self.affinity = np.zeros((n, a), np.float32)  # hidden

    # ------------------------------------------------------------------ resets
    def reset_rows(self, rows: np.ndarray, seeds: np.ndarray | None = None) -> None:
        super().reset_rows(rows, seeds)
        assert self.state is not None
        for arr in (self.p_clicks, self.p_gifts, self.p_meets):
            arr[rows] = 0
        self.p_follow[rows] = False
        self.p_last[rows] = -1
        uf = self.funnel.user_factors(self.state.key[rows])
        self.affinity[rows] = self.funnel.affinity(uf, self.author_f)

    def reset_info(self) -> dict[str, Any]:
        info = super().reset_info()
        info["followed"] = np.zeros(self.n, bool)
        info["gifted"] = np.zeros(self.n, bool)
        return info

    # ------------------------------------------------------------- observation
    def pair_features(self, sel: slice | np.ndarray) -> np.ndarray:
        """``(m, K, N_PAIR)`` float32 pair features of the candidates of slots ``sel``."""
        authors = self.creator[self.candidates[sel]]
        r = np.arange(authors.shape[0])[:, None]
        clicks = self.p_clicks[sel][r, authors].astype(np.float32)
        gifts = self.p_gifts[sel][r, authors].astype(np.float32)
        meets = self.p_meets[sel][r, authors].astype(np.float32)
        last = self.p_last[sel][r, authors]
        since = (self.ep_steps[sel][:, None] - last).astype(np.float32)
        out = np.empty((*authors.shape, N_PAIR), np.float32)
        out[..., 0] = clicks / (clicks + COUNT_SQUASH)
        out[..., 1] = self.p_follow[sel][r, authors]
        out[..., 2] = gifts / (gifts + COUNT_SQUASH)
        out[..., 3] = np.where(last >= 0, since / (since + SINCE_SQUASH), 1.0)
        out[..., 4] = meets / (meets + COUNT_SQUASH)
        return out

    def observe(self) -> dict[str, np.ndarray]:
        assert self.state is not None
        out = self.pair_obs.allocate(self.n)
        for blk in self._blocks():
            self.pair_obs.build(
                self.state.take(blk),
                self.candidates[blk],
                {k: v[blk] for k, v in out.items()},
                pair=self.pair_features(blk),
            )
        return out

    def observe_rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Observations of slots ``rows`` only (a vector env's finished users)."""
        assert self.state is not None
        return self.pair_obs.build(
            self.state.take(rows), self.candidates[rows], pair=self.pair_features(rows)
        )

    # -------------------------------------------------------------------- step
    def _step_block(self, blk: slice, slate: np.ndarray) -> dict[str, np.ndarray]:
        cfg, world, cat = self.config, self.world, self.world.catalog
        assert self.state is not None
        state = self.state.take(blk)  # views: updates write through
        n = state.n
        valid = slate >= 0
        ids = np.where(valid, slate, 0)
        authors = self.creator[ids]
        r = np.arange(n)[:, None]
        following = self.p_follow[blk][r, authors]
        depth = self.funnel.depth(self.p_clicks[blk][r, authors], following)
        # an elementwise product summed per row: unlike einsum / matmul, its result for a user
        # does not depend on how many users share the batch (vector == single, bit for bit)
        content = (cat.embeddings[ids] * state.theta[:, None, :]).sum(-1)
        u = rng.uniforms(
            state.key, rng.step_counter(state.session, state.step), FUNNEL, N_FUNNEL_DRAWS
        )
        resp = self.funnel.respond(
            content, self.affinity[blk][r, authors], depth, following, valid, u
        )
        watch = np.where(resp.clicks, resp.watch_fraction[:, None], 0.0).astype(np.float32)
        fb = Feedback(
            clicks=resp.clicks,
            watch_fraction=watch,
            watch_time=(watch * cat.length[ids]).astype(np.float32),
            likes=np.zeros_like(resp.clicks),
            leave=np.zeros(n, bool),
            ignored=np.zeros(n, bool),
            instruction_kind=np.zeros(n, np.int8),
            instruction_topic=np.full(n, -1, np.int32),
            instruction_item=np.full(n, -1, np.int32),
            extras={"follows": resp.follows, "gifts": resp.gifts},
        )
        res = StepResult(
            slate, fb, np.zeros(n, np.int64), np.zeros(n, bool), state.session.copy(),
            state.day.copy(),
        )  # fmt: skip
        self.apply_response(blk, state, slate, fb)
        info = world.record(state, res)
        info["reward"] = self.settings.reward(resp.clicks, resp.follows, resp.gifts)
        info["followed"] = np.asarray(resp.follows.any(1))
        info["gifted"] = np.asarray(resp.gifts.any(1))
        terminated = np.zeros(n, bool)
        truncated = self.ep_steps[blk] >= self.settings.n_requests
        if cfg.max_episode_steps is not None:
            truncated |= self.ep_steps[blk] >= cfg.max_episode_steps
        self.candidates[blk] = world.candidates(state)
        info["dt_days"] = np.zeros(n, np.int64)
        info["candidate_ids"] = self.candidates[blk].copy()
        return {**info, "terminated": terminated, "truncated": truncated}

    def apply_response(self, blk: slice, state: UserState, slate: np.ndarray, fb: Feedback) -> None:
        """The state update of one request after the user's response, in place: the user
        model's transition, then the pair arrays (`_update_pairs`). `_step_block` calls it with
        the funnel's response; `recoworld.agents.rliv_logs` with a response rebuilt from a log.

        Args:
            blk: the slots stepped (a slice, so that the pair arrays update in place).
            state: ``self.state.take(blk)`` (views).
            slate: ``(n, L)`` item ids shown, -1 for a repeat.
            fb: the response; ``fb.extras`` holds ``(n, L)`` bool ``follows`` and ``gifts``.
                ``self.ep_steps[blk]`` already counts this request.
        """
        valid = slate >= 0
        authors = self.creator[np.where(valid, slate, 0)]
        request = self.ep_steps[blk] - 1  # index of this request in the episode
        self.world.users.transition(state, slate, fb, self.world.catalog)
        extras = fb.extras
        self._update_pairs(
            blk, authors, valid, fb.clicks, extras["follows"], extras["gifts"], request
        )

    def _update_pairs(
        self,
        blk: slice,
        authors: np.ndarray,
        valid: np.ndarray,
        clicks: np.ndarray,
        follows: np.ndarray,
        gifts: np.ndarray,
        request: np.ndarray,
    ) -> None:
        """Meetings, clicks, follows and gifts into the pair arrays of slots ``blk``.

        A pair shown twice in one slate meets once (fancy ``+=`` adds once per repeated index).
        """
        rr, cc = np.nonzero(valid)
        a = authors[rr, cc]
        self.p_meets[blk][rr, a] += 1
        self.p_last[blk][rr, a] = request[rr]
        rr, cc = np.nonzero(clicks)
        a = authors[rr, cc]
        self.p_clicks[blk][rr, a] += 1
        self.p_follow[blk][rr, a] |= follows[rr, cc]
        self.p_gifts[blk][rr, a] += gifts[rr, cc]


class UserAuthorEnv(RecoEnv):
    """A recommender serves one user request after request; items belong to authors, and what
    matters is each user–author pair's lifelong value (click -> follow -> gift).

    ## Description
    Each step is a request: the agent picks a slate of ``slate_size`` items from
    ``num_candidates`` candidates (interest-based, popular and random, as in every recoworld
    env). The user answers through the user–author funnel of `recoworld.users.author`: at most
    one click, and on a click possibly a follow of the item's author and a gift to them. Every
    step of the funnel is more likely for a pair with a higher hidden affinity and a deeper
    history (past clicks, follows, gifts). A given pair meets only when one of the author's
    items is shown, which is rare.

    ## Action Space
    As `RecoEnv`: ``MultiDiscrete([K] * slate_size)`` indices into ``info["candidate_ids"]``
    (``Discrete(K)`` for one slot, ``Box(-1, 1, (K,))`` with ``action_type="scores"``).

    ## Observation Space
    As `RecoEnv`, with ``candidates`` of shape ``(K, dim + 5 + 5)``: each row ends with the
    pair features of the user and the candidate's author (`PAIR_COLUMNS`): past clicks,
    following (0/1), past gifts (counts ``c`` shown as ``c / (c + 5)``), requests since the pair
    last met ``d / (d + 20)`` (1.0 if never), and meetings ``m / (m + 5)``.

    ## Rewards
    ``reward_click * click + reward_follow * follow + reward_gift * gift`` (defaults 1, 5, 20).
    ``info["followed"]`` and ``info["gifted"]`` say whether this request brought a follow and a
    gift (the author is the clicked item's).

    ## Starting State
    A new user (its interest from the engagement parametric user, its author-taste factors from
    its own random stream) who has met no author yet.

    ## Episode End
    Truncated after ``n_requests`` requests (default 200); never terminated (the user does not
    leave). ``max_episode_steps`` still caps the episode; ``min(n_requests,
    max_episode_steps)`` must be at least 2 (a pair must be able to meet twice).

    ## Arguments
    `EnvConfig` fields, plus `UserAuthorSettings`: ``funnel`` (an `AuthorFunnel` or a dict of
    its fields), ``n_requests``, ``reward_click``, ``reward_follow``, ``reward_gift``.

    ## Version History
    - v0: initial release.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("recoworld:recoworld/UserAuthor-v0", n_items=300, num_candidates=20)
        >>> obs, info = env.reset(seed=0)
        >>> obs["candidates"].shape
        (20, 42)
        >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        >>> sorted(k for k in info if k in ("followed", "gifted"))
        ['followed', 'gifted']
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.settings, rest = UserAuthorSettings.split(kwargs)
        super().__init__(render_mode=render_mode, **rest)

    def _make_core(self, n: int) -> EnvCore:
        return UserAuthorCore(self.config, n, self.settings)


class UserAuthorVectorEnv(RecoVectorEnv):
    """``num_envs`` users of UserAuthor-v0 stepped by one `UserAuthorCore` (see
    `UserAuthorEnv` for the dynamics and `RecoVectorEnv` for autoreset)."""

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: Any = "next_step",
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.settings, rest = UserAuthorSettings.split(kwargs)
        super().__init__(num_envs, autoreset_mode, render_mode, **rest)

    def _make_core(self, n: int) -> EnvCore:
        return UserAuthorCore(self.config, n, self.settings)

    def _final_obs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        core = self.core
        assert isinstance(core, UserAuthorCore)
        return core.observe_rows(rows)
