"""`RLIVAgent`'s offline samples from ordinary request logs (the log schema of
`recoworld.replay.schema`), numpy only.

Two functions close the loop "log requests, train offline later":

- `write_request_log` runs any `Recommender` on a UserAuthor-v0 vector env and writes every
  request as one row of the project's log schema (`TrajectoryWriter`, Parquet): the candidates,
  the slate, the recommender's propensities, the click, and the optional per-slot columns
  ``followed`` and ``gifted``. The env's info says per *request* whether a follow or a gift
  happened; the funnel (`recoworld.users.author`) allows both only on the one clicked slot and
  for that item's author, so they are logged on that slot (``clicks & followed``).
- `samples_from_log` rebuilds from such a log the `Transitions` that `RLIVAgent.record` builds
  while the run happens. A log holds no per-candidate features, but an observation holds only
  what a real system sees (DESIGN.md; `recoworld.testing` checks that no hidden state reaches
  it), so it is a function of the logged history. Each logged episode is replayed through the
  env's own machinery: a fresh user of `UserAuthorCore` (its hidden traits are drawn from an
  arbitrary key: they never reach an observation), then, request by request, the logged
  candidates are observed with the env's observation builder (`UserAuthorCore.observe_rows`),
  and the logged response, rebuilt as a `Feedback`, goes through `UserAuthorCore.apply_response`
  (the user model's transition and the pair counters, exactly as in a live step). The state
  rows then go through the same sample builder as `record` (`make_tracker`: ASA for ``rliv``).

What the replay does not rebuild: the ``instruction`` part of the observation (its topic and
item are not logged; UserAuthor-v0 users give no instructions, and RLIV's state rows do not
use it), per-slot likes (the log has one ``liked`` flag; it is put on the clicked slot;
UserAuthor-v0 never likes) and the ``ignored`` flag (not logged; never set by UserAuthor-v0).
None of these reaches a state row, so the rebuilt samples equal the recorded ones bit for bit
(tests/test_rliv_logs.py).

Logged episodes are identified by ``(recommender, user_id, session)`` and their rows ordered by
``step`` (0, 1, ... without gaps). They are replayed in *cohorts*: episodes whose first rows
are adjacent in the log (the users a batched runner started together) are replayed together,
cohort after cohort in log order, so the samples come in the order `record` gives for the same
run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.agents.rliv_data import Transitions, make_tracker, state_rows
from recoworld.errors import ConfigError, ReplayDataError, require
from recoworld.types import Feedback

ENV_ID = "recoworld/UserAuthor-v0"
PAIR_LOG_COLUMNS = ("followed", "gifted")
EPISODE_KEY = ("recommender", "user_id", "session")
_NOT_A_LOG = (
    "the log lacks the per-slot columns {missing}; RLIV's samples need each slot's follow and "
    "gift: write the log with recoworld.agents.rliv_logs.write_request_log, or add list<bool> "
    "columns 'followed' and 'gifted' (True on the slot whose click brought the follow / gift)"
)


# ---------------------------------------------------------------------------------- writing
def _vector_env(env: Any) -> Any:
    """The native UserAuthor-v0 vector env behind ``env`` (same-step autoreset), or an error."""
    from gymnasium.vector import AutoresetMode

    from recoworld.envs.user_author import UserAuthorVectorEnv

    native = getattr(env, "venv", env)  # an SB3 adapter wraps the native env
    if not isinstance(native, UserAuthorVectorEnv):
        raise ConfigError(
            f"write_request_log needs a UserAuthor-v0 vector env, got {type(env).__name__}; "
            "make one with UserAuthorVectorEnv(n_users, autoreset_mode='same_step', ...)"
        )
    if native.metadata["autoreset_mode"] != AutoresetMode.SAME_STEP:
        raise ConfigError(
            f"the env uses autoreset mode {native.metadata['autoreset_mode']}; make it with "
            "autoreset_mode='same_step' (each step is then a logged request of every user)"
        )
    return native


def _recommender_info(info: dict[str, Any]) -> dict[str, Any]:
    """The batched info a recommender gets: gymnasium's masks and ``final_*`` entries left out
    (what `RLIVAgent.record` passes through `batch_infos`)."""
    return {k: v for k, v in info.items() if k[0] != "_" and k not in ("final_obs", "final_info")}


def write_request_log(
    env: Any,
    recommender: Any,
    path: str | os.PathLike[str],
    *,
    episodes: int = 1,
    seed: int = 0,
    label: str = "logged",
) -> Path:
    """Run ``recommender`` on ``env`` and write every request in the log schema.

    The env's ``num_envs`` users are stepped together (slot ``i`` seeded ``seed + i``, as
    `RLIVAgent.for_env` seeds its training env); each slot runs ``episodes`` episodes, a new
    user per episode. Per request one row: ``user_id`` is ``i + num_envs * e`` for the ``e``-th
    user of slot ``i`` (unique in the log), ``step`` the request's index in the episode,
    ``propensity`` the recommender's, ``reward`` the env's, ``followed`` / ``gifted`` on the
    clicked slot (see the module docstring). One Parquet part per round of episodes.

    Args:
        env: a `UserAuthorVectorEnv` made with ``autoreset_mode="same_step"`` (or the SB3
            adapter around one).
        recommender: any `Recommender`; it gets each request's batched observation and info
            and is ``reset(mask)`` for the users whose episode ended.
        path: the log's folder (it must hold no part files yet).
        episodes: episodes per slot, at least 1.
        seed: seed of the env's reset.
        label: the log's ``recommender`` column.

    Returns:
        ``path`` as a `Path`.
    """
    from recoworld.replay.schema import TrajectoryWriter

    native = _vector_env(env)
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ConfigError(f"episodes={episodes!r} must be a positive integer")
    n = native.num_envs
    obs, info = native.reset(seed=int(seed))
    done_eps = np.zeros(n, np.int64)  # episodes finished per slot
    t = np.zeros(n, np.int64)  # request index in the current episode
    slots = np.arange(n)
    with TrajectoryWriter(path) as writer:
        while (done_eps < episodes).any():
            cand = np.asarray(info["candidate_ids"]).copy()
            rec = recommender.recommend(obs, _recommender_info(info))
            obs, reward, term, trunc, info = native.step(rec.action)
            dones = np.asarray(term | trunc, bool)
            step_info = info.get("final_info", info)  # a finished user's own step
            clicks = np.asarray(step_info["clicks"], bool)
            keep = done_eps < episodes  # slots still logging
            row = {
                "recommender": label,
                "user_id": slots + n * done_eps,
                "session": step_info["session"],
                "day": step_info["day"],
                "step": t,
                "candidate_ids": cand,
                "slate_ids": step_info["slate_ids"],
                "propensity": np.asarray(rec.propensity, np.float32).reshape(clicks.shape),
                "clicks": clicks,
                "clicked": step_info["clicked"],
                "watch_time": step_info["watch_time"],
                "watch_fraction": step_info["watch_fraction"],
                "liked": step_info["liked"],
                "left": step_info["left"],
                "return_days": step_info["return_days"],
                "churned": step_info["churned"],
                "reward": reward,
                "instruction": step_info["instruction"],
                "instruction_kind": step_info["instruction_kind"],
                # the funnel follows and gifts only on the clicked slot (module docstring)
                "followed": clicks & np.asarray(step_info["followed"], bool)[:, None],
                "gifted": clicks & np.asarray(step_info["gifted"], bool)[:, None],
            }
            writer.append(
                {k: (v if isinstance(v, str) else np.asarray(v)[keep]) for k, v in row.items()}
            )
            t = np.where(dones, 0, t + 1)
            done_eps += dones
            if dones.any():
                if hasattr(recommender, "reset"):
                    recommender.reset(dones)
                writer.flush()
    return Path(path)


# --------------------------------------------------------------------------------- reading
def _frame(log: Any, recommender: str | None) -> Any:
    """The log as a DataFrame: a folder of part files (`read_trajectories`) or a DataFrame."""
    pd: Any = require("pandas", "data")
    from recoworld.replay.schema import read_trajectories

    df = log if isinstance(log, pd.DataFrame) else read_trajectories(log)
    missing = [c for c in PAIR_LOG_COLUMNS if c not in df.columns]
    if missing:
        raise ReplayDataError(_NOT_A_LOG.format(missing=missing))
    if df[list(PAIR_LOG_COLUMNS)].isna().any().any():
        raise ReplayDataError(
            "some rows of the log have no 'followed' / 'gifted' values (parts written without "
            "them); give a log whose every part has them (write_request_log)"
        )
    if recommender is not None:
        df = df[df["recommender"] == recommender]
    if len(df) == 0:
        raise ReplayDataError(f"the log has no rows (recommender={recommender!r})")
    return df.reset_index(drop=True)


def _stack(df: Any, name: str, width: int, dtype: Any) -> np.ndarray:
    """A list column as an ``(m, width)`` array, or a `ReplayDataError` naming the column."""
    values = df[name].to_numpy()
    widths = {len(v) for v in values}
    if widths != {width}:
        raise ReplayDataError(
            f"log column {name!r} has rows of widths {sorted(widths)} but the env takes "
            f"{width}; give samples_from_log the env arguments the log was written with"
        )
    return np.stack(values).astype(dtype)


def _cohorts(df: Any) -> list[np.ndarray]:
    """Logged episodes as ``(m, T)`` arrays of row positions (-1 past an episode's end), one
    per cohort of episodes whose first rows are adjacent in the log (module docstring)."""
    episodes = []
    for key, pos in df.groupby(list(EPISODE_KEY), sort=False).indices.items():
        steps = df["step"].to_numpy()[pos]
        order = np.argsort(steps, kind="stable")
        if not np.array_equal(steps[order], np.arange(pos.size)):
            raise ReplayDataError(
                f"episode (recommender, user_id, session) = {key} logs steps "
                f"{np.sort(steps)[:10].tolist()}...; a replay needs every request from step 0 "
                "on, each once"
            )
        episodes.append(pos[order])
    episodes.sort(key=lambda p: int(p[0]))
    first = np.array([int(p[0]) for p in episodes])
    breaks = np.flatnonzero(np.diff(first) != 1) + 1
    out = []
    for group in np.split(np.arange(len(episodes)), breaks):
        length = max(episodes[j].size for j in group)
        idx = np.full((group.size, length), -1, np.int64)
        for r, j in enumerate(group):
            idx[r, : episodes[j].size] = episodes[j]
        out.append(idx)
    return out


def samples_from_log(
    log: Any,
    *,
    mode: str = "rliv",
    recommender: str | None = None,
    **env_kwargs: Any,
) -> Transitions:
    """`RLIVAgent`'s samples rebuilt from a request log (module docstring): what
    `RLIVAgent.record` returns for the same run, for `RLIVAgent.fit_offline`.

    Args:
        log: a log folder (``part-*.parquet``, as `write_request_log` and `TrajectoryWriter`
            write) or the ``pandas.DataFrame`` of `read_trajectories`; it needs the optional
            ``followed`` and ``gifted`` columns.
        mode: `RLIVArgs.mode` of the agent to train (``"rliv"`` and ``"myopic"``: SCRI-MDP
            samples with ASA; ``"request"``: the per-request MDP).
        recommender: keep only this recommender's rows (all when None).
        **env_kwargs: the UserAuthor-v0 arguments the log was written with (``n_items``,
            ``num_candidates``, ``n_requests`` ...), over the registered id's defaults (as
            ``gym.make("recoworld/UserAuthor-v0", **env_kwargs)``): they fix the catalog and
            the observation.

    Returns:
        `Transitions` with rows of width ``F`` (the candidate row plus the user's features).

    Raises:
        ReplayDataError: the log lacks ``followed`` / ``gifted``, an episode misses steps, the
            candidate or slate width is not the env's, or a shown item is not a candidate.
    """
    from recoworld.envs.registry import ENV_KWARGS
    from recoworld.envs.single import make_config
    from recoworld.envs.user_author import UserAuthorCore, UserAuthorSettings

    if mode not in ("rliv", "request", "myopic"):
        raise ConfigError(f"mode={mode!r}; choose 'rliv', 'request' or 'myopic'")
    df = _frame(log, recommender)
    # the registered id's defaults first, as gym.make(ENV_ID, **env_kwargs) applies them
    kwargs = {**ENV_KWARGS[ENV_ID], **env_kwargs}
    settings, rest = UserAuthorSettings.split(kwargs)
    config = make_config(rest)
    cohorts = _cohorts(df)
    core = UserAuthorCore(config, max(c.shape[0] for c in cohorts), settings)
    k, slate_size = config.num_candidates, config.slate_size
    cand_log = _stack(df, "candidate_ids", k, np.int64)
    slate_log = _stack(df, "slate_ids", slate_size, np.int64)
    n_items = core.world.catalog.n_items
    if cand_log.min() < 0 or cand_log.max() >= n_items or slate_log.max() >= n_items:
        raise ReplayDataError(
            f"the log's item ids lie outside [0, {n_items}) of the env's catalog; give "
            "samples_from_log the env arguments the log was written with"
        )
    cols = {
        "clicks": _stack(df, "clicks", slate_size, bool),
        "followed": _stack(df, "followed", slate_size, bool),
        "gifted": _stack(df, "gifted", slate_size, bool),
        "watch_fraction": df["watch_fraction"].to_numpy(np.float32),
        "watch_time": df["watch_time"].to_numpy(np.float32),
        "liked": df["liked"].to_numpy(bool),
        "left": df["left"].to_numpy(bool),
        "instruction_kind": df["instruction_kind"].to_numpy(np.int8),
    }
    creator = core.creator
    dim = core.pair_obs.cand_dim + core.pair_obs.user_dim
    n_authors = int(creator.max()) + 1  # as RLIVAgent sizes its tracker
    parts: list[Transitions] = []
    for idx in cohorts:
        m, length = idx.shape
        rows, blk = np.arange(m), slice(0, m)
        # fresh users; their hidden traits (from these arbitrary keys) never reach a row
        core.reset_rows(rows, seeds=np.arange(m))
        tracker = make_tracker(mode, m, n_authors, slate_size, dim)
        ends = (idx >= 0).sum(1) - 1
        for t in range(length):
            li = idx[:, t]
            on = li >= 0
            at = np.maximum(li, 0)
            core.candidates[blk] = np.where(on[:, None], cand_log[at], core.candidates[blk])
            x = state_rows(core.observe_rows(rows))
            cand = core.candidates[blk]
            slate = np.where(on[:, None], slate_log[at], -1)
            valid = slate >= 0
            match = cand[:, None, :] == slate[:, :, None]  # (m, L, K)
            if (valid & ~match.any(2)).any():
                bad = int(li[np.flatnonzero((valid & ~match.any(2)).any(1))[0]])
                raise ReplayDataError(
                    f"log row {bad}: slate_ids {slate_log[bad].tolist()} are not all among "
                    "its candidate_ids; a shown item must be one of the request's candidates"
                )
            action = match.argmax(2)  # the first candidate showing the item (0 for a repeat)
            fb, extras = _feedback(cols, at, on)
            signals = np.stack([fb.clicks, extras["follows"], extras["gifts"]], -1)
            done = on & (ends == t)
            parts.append(
                tracker.step(x, creator[cand], action, signals.astype(np.float32), valid, done)
            )
            core.ep_steps[blk] += 1  # as EnvCore.step counts the request before applying it
            assert core.state is not None
            core.apply_response(blk, core.state.take(blk), slate, fb)
    return Transitions.concat(parts, dim)


def _feedback(
    cols: dict[str, np.ndarray], at: np.ndarray, on: np.ndarray
) -> tuple[Feedback, dict[str, np.ndarray]]:
    """The `Feedback` of log rows ``at`` (users ``on``; the others did nothing): the logged
    click, follow and gift per slot, the watch on the clicked slot, the session end and the
    instruction kind (module docstring: what is not logged)."""
    clicks = cols["clicks"][at] & on[:, None]
    extras = {
        "follows": cols["followed"][at] & clicks,
        "gifts": cols["gifted"][at] & clicks,
    }
    n = at.size
    fb = Feedback(
        clicks=clicks,
        watch_fraction=np.where(clicks, cols["watch_fraction"][at][:, None], 0).astype(np.float32),
        watch_time=np.where(clicks, cols["watch_time"][at][:, None], 0).astype(np.float32),
        likes=clicks & cols["liked"][at][:, None],
        leave=cols["left"][at] & on,
        ignored=np.zeros(n, bool),
        instruction_kind=np.where(on, cols["instruction_kind"][at], 0).astype(np.int8),
        instruction_topic=np.full(n, -1, np.int32),
        instruction_item=np.full(n, -1, np.int32),
        extras=extras,
    )
    return fb, extras
