"""The one batched core behind `RecoEnv` (n = 1), `RecoVectorEnv` (n = num_envs) and
`simulate`. The dynamics live in the user model; this module orders one step:

slate from action -> respond -> transition -> session ends -> reward -> candidates -> observe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from recoworld import rng
from recoworld.catalog import Catalog
from recoworld.envs.candidates import CandidateGenerator
from recoworld.envs.config import EnvConfig
from recoworld.envs.observation import ObservationBuilder
from recoworld.errors import InvalidAction
from recoworld.types import Feedback
from recoworld.users import instructions
from recoworld.users.parametric import N_STEP_DRAWS
from recoworld.users.population import make_population
from recoworld.users.sessions import begin_next, end_sessions
from recoworld.users.state import UserState


@dataclass
class StepResult:
    """What one batched step produced (arrays over the n users stepped)."""

    slate: np.ndarray  # (n, L) item ids shown, -1 for a repeat shown once
    feedback: Feedback
    gap: np.ndarray  # (n,) days until the next session (0 if the session goes on)
    churned: np.ndarray  # (n,) bool, churned at this step
    session: np.ndarray  # (n,) session of the step taken
    day: np.ndarray  # (n,) day of the step taken


class World:
    """Catalog, users and candidate generation: what every runner of the core shares."""

    def __init__(self, config: EnvConfig) -> None:
        self.config = config
        self.catalog: Catalog = config.make_catalog()
        self.population = make_population(config.users)
        if self.population.has_llm:  # this world's own endpoint client and per-user memory
            self.population = self.population.connect(
                llm=config.llm, base_url=config.llm_base_url, model=config.llm_model
            )
        self.users = self.population.dynamics
        # feedback extras the model asks the env to pass into info (e.g. LLM fallback flags)
        self.info_extras: dict[str, Any] = dict(getattr(self.users, "info_extras", {}))
        self.candidate_gen = CandidateGenerator(
            self.catalog, config.num_candidates, config.candidate_mix
        )
        self.k = config.num_candidates
        self.slate_size = config.slate_size
        self.action_space = self._action_space()

    def _action_space(self) -> spaces.Space[Any]:
        k, s = self.config.num_candidates, self.config.slate_size
        if self.config.action_type == "scores":
            return spaces.Box(-1.0, 1.0, (k,), np.float32)
        return spaces.Discrete(k) if s == 1 else spaces.MultiDiscrete([k] * s)

    def sample_users(self, keys: np.ndarray, user_ids: np.ndarray) -> UserState:
        return self.population.sample_keys(keys, user_ids, self.catalog, self.config.history)

    def candidates(self, state: UserState) -> np.ndarray:
        """``(n, K)`` candidates for each user's next step."""
        ctr = rng.step_counter(state.session, state.step)
        return self.candidate_gen.draw(state.key, ctr, state.click_mix)

    def slate(self, action: Any, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Validate a batched action and turn it into item ids.

        Args:
            action: ``(n, L)`` (or ``(n,)`` when ``slate_size == 1``) integer indices into the
                candidates, or ``(n, K)`` scores for ``action_type="scores"``.
            candidates: ``(n, K)`` item ids.

        Returns:
            ``(slate (n, L) item ids with repeats replaced by -1, repeats (n,))``.
        """
        n, k, s = candidates.shape[0], self.k, self.slate_size
        a = np.asarray(action)
        if self.config.action_type == "scores":
            if a.shape != (n, k) or a.dtype.kind not in "fiu" or not np.isfinite(a).all():
                raise InvalidAction(
                    f"action {_short(a)} is not in the action space {self.action_space}: "
                    f"expected {n} rows of {k} finite scores"
                )
            idx = np.argsort(-a, axis=1, kind="stable")[:, :s]
        else:
            if a.ndim == 1 and s == 1:
                a = a[:, None]
            if a.dtype.kind == "f" and np.isnan(a).any():
                raise InvalidAction(
                    f"action {_short(a)} contains NaN; the action space "
                    f"{self.action_space} takes integer indices"
                )
            if a.dtype.kind not in "iu" or a.shape != (n, s):
                raise InvalidAction(
                    f"action {_short(a)} (dtype {a.dtype}, shape {a.shape}) is not in the "
                    f"action space {self.action_space}: give {s} integer candidate indices per "
                    f"user, shape {(n, s) if s > 1 else (n,)}"
                )
            if a.min() < 0 or a.max() >= k:
                raise InvalidAction(
                    f"action {_short(a)} has indices outside [0, {k}) of the "
                    f"action space {self.action_space}"
                )
            idx = a
        slate = candidates[np.arange(n)[:, None], idx]
        if s > 1:
            dup = ((slate[:, :, None] == slate[:, None, :]) & np.tri(s, s, -1, bool)).any(2)
            slate[dup] = -1
            return slate, dup.sum(1)
        return slate, np.zeros(n, np.int64)

    def advance(self, state: UserState, slate: np.ndarray) -> StepResult:
        """One step of every user in ``state``: respond, transition, end sessions (in place).

        Users whose session ends get their gap and churn drawn; the next session is *not*
        started here (see `start_next`).
        """
        session, day = state.session.copy(), state.day.copy()
        u = rng.uniforms(
            state.key, rng.step_counter(state.session, state.step), rng.STEP, N_STEP_DRAWS
        )
        fb = self.users.respond(state, slate, self.catalog, u)
        self.users.transition(state, slate, fb, self.catalog)
        gap = np.zeros(state.n, np.int64)
        churned = np.zeros(state.n, bool)
        if fb.leave.any():
            rows = np.flatnonzero(fb.leave)
            gap[rows], churned[rows] = end_sessions(state, rows, u[rows])
        return StepResult(slate, fb, gap, churned, session, day)

    @staticmethod
    def start_next(state: UserState, rows: np.ndarray, gap: np.ndarray) -> None:
        begin_next(state, rows, gap)

    def record(self, state: UserState, res: StepResult) -> dict[str, np.ndarray]:
        """What a log row holds about each user's step (and the feedback part of ``info``).

        Args:
            state: the users after `advance`; res: what `advance` returned.

        Returns:
            Arrays with a leading user axis: user_id, session, day, slate_ids, clicks, clicked,
            watch_time, watch_fraction, liked, left, return_days (-1 unless the session ended
            and the user returns), churned, reward, instruction (text), instruction_kind.
        """
        fb, slate = res.feedback, res.slate
        returns = fb.leave & ~res.churned
        clicked = fb.clicks.any(1)
        return {
            "user_id": state.user_id.copy(),
            "session": res.session,
            "day": res.day,
            "slate_ids": slate,
            "clicks": fb.clicks,
            "clicked": np.where(clicked, slate[np.arange(state.n), fb.clicks.argmax(1)], -1),
            "watch_time": fb.watch_time.sum(1),
            "watch_fraction": fb.watch_fraction.sum(1),  # at most one click per step
            "liked": fb.likes.any(1),
            "left": fb.leave,
            "return_days": np.where(returns, res.gap, -1),
            "churned": res.churned,
            "reward": self.config.rewards(fb, self.catalog.median_length, res.gap, returns),
            "instruction": self.instruction_texts(state.key, fb),
            "instruction_kind": fb.instruction_kind,
            **{
                k: np.asarray(fb.extras.get(k, np.full(state.n, v)))
                for k, v in self.info_extras.items()
            },
        }

    def start_info(self, state: UserState, candidates: np.ndarray) -> dict[str, np.ndarray]:
        """The ``info`` at a session's first observation: no slate shown yet."""
        n, s = state.n, self.slate_size
        return {
            "user_id": state.user_id.copy(),
            "session": state.session.copy(),
            "day": state.day.copy(),
            "dt_days": np.zeros(n, np.int64),
            "candidate_ids": candidates.copy(),
            "slate_ids": np.full((n, s), -1, np.int64),
            "clicks": np.zeros((n, s), bool),
            "clicked": np.full(n, -1, np.int64),
            "watch_time": np.zeros(n, np.float32),
            "watch_fraction": np.zeros(n, np.float32),
            "liked": np.zeros(n, bool),
            "left": np.zeros(n, bool),
            "return_days": np.full(n, -1, np.int64),
            "churned": np.zeros(n, bool),
            "instruction": np.full(n, "", object),
            "instruction_kind": np.zeros(n, np.int8),
            "repeats": np.zeros(n, np.int64),
            **{k: np.full(n, v) for k, v in self.info_extras.items()},
        }

    def instruction_texts(self, state_keys: np.ndarray, fb: Feedback) -> np.ndarray:
        """``(n,)`` object array of rendered instruction sentences ("" where none)."""
        out = np.full(fb.leave.shape[0], "", dtype=object)
        for r in np.flatnonzero(fb.instruction_kind):  # only the users that spoke up
            out[r] = instructions.render(
                int(fb.instruction_kind[r]),
                int(fb.instruction_topic[r]),
                int(fb.instruction_item[r]),
                self.catalog,
                int(state_keys[r] % np.uint64(3)),
            )
        said = fb.extras.get("instruction_text")  # users that speak in their own words
        if said is not None:
            for r in np.flatnonzero(fb.instruction_kind):
                if said[r]:
                    out[r] = str(said[r])
        return out


def _short(a: np.ndarray) -> str:
    text = np.array2string(np.asarray(a), threshold=8, edgeitems=2)
    return text if len(text) < 120 else text[:117] + "..."


BLOCK = 2048  # users stepped together; larger batches are processed block by block


class EnvCore:
    """n episode slots over one `World`: reset, step, autoreset bookkeeping, info."""

    def __init__(self, config: EnvConfig, n: int) -> None:
        self.world = World(config)
        self.config = config
        self.n = n
        self.obs_builder = ObservationBuilder(
            self.world.catalog,
            config.num_candidates,
            config.horizon_days if config.multi_session else 1,
        )
        self.state: UserState | None = None
        self.seeds = np.zeros(n, np.int64)
        self.episode = np.full(n, -1, np.int64)
        self.ep_steps = np.zeros(n, np.int64)
        self.candidates = np.zeros((n, config.num_candidates), np.int64)

    def reset_rows(self, rows: np.ndarray, seeds: np.ndarray | None = None) -> None:
        """Start new episodes (new users) in slots ``rows``; ``seeds`` restarts their ids."""
        if seeds is not None:
            self.seeds[rows] = seeds
            self.episode[rows] = 0
        else:
            self.episode[rows] += 1
        keys = rng.user_keys(self.seeds[rows], self.episode[rows])
        users = self.world.sample_users(keys, self.episode[rows])
        if self.state is None:
            self.state = users  # first reset covers every slot
        else:
            self.state.put(rows, users)
        self.ep_steps[rows] = 0
        self.candidates[rows] = self.world.candidates(users)

    def observe(self) -> dict[str, np.ndarray]:
        """Fresh observations of every slot, built block by block (cache-sized temporaries)."""
        assert self.state is not None
        out = self.obs_builder.allocate(self.n)
        for blk in self._blocks():
            self.obs_builder.build(
                self.state.take(blk), self.candidates[blk], {k: v[blk] for k, v in out.items()}
            )
        return out

    def _blocks(self) -> list[slice]:
        return [slice(lo, min(lo + BLOCK, self.n)) for lo in range(0, self.n, BLOCK)]

    def reset_info(self) -> dict[str, Any]:
        assert self.state is not None
        return self.world.start_info(self.state, self.candidates)

    def step(self, action: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every slot; returns batched ``(reward, terminated, truncated, info)``.

        The observation is built separately (`observe`), after any autoreset. Users are stepped
        in blocks of at most ``BLOCK`` rows (views into the state), so temporaries stay small;
        every rule is per user, so blocking does not change any result.
        """
        assert self.state is not None
        slate, repeats = self.world.slate(action, self.candidates)
        self.ep_steps += 1
        parts = [self._step_block(blk, slate[blk]) for blk in self._blocks()]
        if len(parts) == 1:
            out = parts[0]
        else:
            out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        reward, terminated, truncated = (
            out.pop("reward"),
            out.pop("terminated"),
            out.pop("truncated"),
        )
        out["repeats"] = repeats
        return reward, terminated, truncated, out

    def _step_block(self, blk: slice, slate: np.ndarray) -> dict[str, np.ndarray]:
        cfg, world = self.config, self.world
        assert self.state is not None
        state = self.state.take(blk)  # views: updates write through
        n = state.n
        res = world.advance(state, slate)
        fb = res.feedback
        returns = fb.leave & ~res.churned
        info = world.record(state, res)
        dt = np.zeros(n, np.int64)
        if cfg.multi_session:
            terminated = res.churned.copy()
            truncated = returns & (state.day + res.gap >= cfg.horizon_days)
            cont = returns & ~truncated
            if cont.any():
                rows = np.flatnonzero(cont)
                world.start_next(state, rows, res.gap[rows])
                dt[rows] = res.gap[rows]
        else:
            terminated = fb.leave.copy()
            truncated = np.zeros(n, bool)
        if cfg.max_episode_steps is not None:
            # as gymnasium's TimeLimit: the cap truncates even a step that also terminates
            truncated |= self.ep_steps[blk] >= cfg.max_episode_steps
        self.candidates[blk] = world.candidates(state)
        info["dt_days"] = dt
        info["candidate_ids"] = self.candidates[blk].copy()
        return {**info, "terminated": terminated, "truncated": truncated}
