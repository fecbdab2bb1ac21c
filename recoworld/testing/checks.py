"""Conformance checks every recoworld environment must pass.

Each check raises `AssertionError` with a message that says what broke, where (reset or step
number, env slot) and the values involved. Random actions come from a `numpy.random.Generator`
seeded by the check's ``seed``, so a failure reproduces exactly.
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode

OBS_KEYS = ("candidates", "instruction", "user")
"""The observation's keys, and nothing else: anything more could leak hidden user state."""

INFO_KEYS = (
    "user_id",
    "session",
    "day",
    "dt_days",
    "candidate_ids",
    "slate_ids",
    "clicks",
    "clicked",
    "watch_time",
    "left",
    "return_days",
    "instruction",
    "repeats",
)
"""Info keys every recoworld env returns from ``reset`` and ``step``."""

HIDDEN_STATE = ("theta", "theta0", "novelty", "propensity", "exposure", "satisfaction", "past_mix")
"""`UserState` fields no observation may depend on (USER_MODEL.md's hidden state)."""

_INT_KEYS = ("user_id", "session", "day", "dt_days", "clicked", "return_days", "repeats")
MAX_EPISODE_STEPS = 100_000  # bound on the search for an episode's end (ResetNeeded check)


def _require_asserts() -> None:
    # The checks are `assert` statements, as in Gymnasium's checker; `python -O` strips them.
    if not __debug__:
        raise RuntimeError("recoworld.testing checks need assertions; run Python without -O")


def random_action(space: spaces.Space[Any], rng: np.random.Generator) -> Any:
    """One uniformly random action of a recoworld action space, drawn from ``rng``.

    Args:
        space: ``Discrete``, ``MultiDiscrete`` or ``Box``.
        rng: the generator to draw from.

    Returns:
        ``np.int64`` for ``Discrete``, ``(slate_size,)`` ints for ``MultiDiscrete``, ``(K,)``
        float32 scores for ``Box``.
    """
    if isinstance(space, spaces.Discrete):
        return np.int64(space.start + rng.integers(space.n))
    if isinstance(space, spaces.MultiDiscrete):
        return (space.start + rng.integers(space.nvec)).astype(space.dtype)
    if isinstance(space, spaces.Box):
        return rng.uniform(space.low, space.high).astype(space.dtype)
    raise TypeError(f"no random actions for space {space}; expected Discrete, MultiDiscrete or Box")


# --------------------------------------------------------------------------- check_env
def check_env(
    env_or_id: gym.Env[Any, Any] | str, seed: int = 0, n_steps: int = 200, **kwargs: Any
) -> None:
    """Check one environment against Gymnasium's API and recoworld's public contract.

    Runs `gymnasium.utils.env_checker.check_env` on the unwrapped env, then ``n_steps``
    random steps (resetting when an episode ends) checking that: observations are in the
    space, finite float32 and have exactly the keys `OBS_KEYS`; info has `INFO_KEYS` with the
    right shapes; ``candidate_ids`` are distinct item ids in the catalog, are what the
    observation shows and what the next action indexes (``slate_ids``); clicks, ``clicked``
    and ``repeats`` agree with the slate; rewards are finite. Then: the observation must not
    move when the hidden user state (`HIDDEN_STATE`) is scrambled, stepping a finished
    episode must raise `ResetNeeded`, and a seed must fix the first observation.

    Args:
        env_or_id: an env, or an id made with ``gym.make(id, **kwargs)``.
        seed: seeds the env and the random actions.
        n_steps: random steps to check.
        **kwargs: env arguments (only with an id).

    Raises:
        AssertionError: naming the first violation found.
    """
    _require_asserts()
    if isinstance(env_or_id, str):
        env: gym.Env[Any, Any] = gym.make(env_or_id, **kwargs)
    elif kwargs:
        raise TypeError(f"env arguments {sorted(kwargs)} can only be given with an env id")
    else:
        env = env_or_id
    raw = env.unwrapped
    try:
        gym_check_env(raw, skip_render_check=True)
        k, slate_size = _check_spaces(raw)
        repeated = _check_rollout(raw, seed, n_steps, k, slate_size)
        _check_hidden_state_not_observed(raw, seed)
        _check_reset_needed(raw, seed)
        _check_same_seed(raw, seed)
        # Raised last, so that a failure here also tells that every other check passed.
        if repeated:
            raise AssertionError(f"{repeated} (every other check passed)")
    finally:
        if isinstance(env_or_id, str):
            env.close()


def _check_spaces(raw: gym.Env[Any, Any]) -> tuple[int, int | None]:
    """Check the spaces of the contract; returns ``(K, slate_size or None if unknown)``."""
    space = raw.observation_space
    assert isinstance(space, spaces.Dict), f"observation space {space} is not a Dict"
    assert tuple(sorted(space.spaces)) == OBS_KEYS, (
        f"observation space keys {sorted(space.spaces)} are not exactly {list(OBS_KEYS)}; extra "
        "keys may leak hidden user state"
    )
    for key, box in space.spaces.items():
        assert isinstance(box, spaces.Box) and box.dtype == np.float32, (
            f"observation space {key!r} is {box}; expected a float32 Box"
        )
        assert (
            box.is_bounded("both") and np.isfinite(box.low).all() and np.isfinite(box.high).all()
        ), f"observation space {key!r} is not bounded: {box}"
    k = space["candidates"].shape[0]
    act = raw.action_space
    config = getattr(raw, "config", None)
    if isinstance(act, spaces.Discrete):
        assert act.n == k and act.start == 0, f"action space {act} does not index {k} candidates"
        slate_size: int | None = 1
    elif isinstance(act, spaces.MultiDiscrete):
        assert act.nvec.ndim == 1 and (act.nvec == k).all() and (act.start == 0).all(), (
            f"action space {act} is not MultiDiscrete([{k}] * slate_size)"
        )
        assert act.nvec.size > 1, f"action space {act} has one slot; expected Discrete({k})"
        slate_size = int(act.nvec.size)
    elif isinstance(act, spaces.Box):
        assert act.shape == (k,) and (act.low == -1).all() and (act.high == 1).all(), (
            f"score action space {act} is not Box(-1, 1, ({k},))"
        )
        slate_size = getattr(config, "slate_size", None)
    else:
        raise AssertionError(f"action space {act} is not Discrete, MultiDiscrete or Box")
    assert hasattr(raw, "catalog"), "the env does not expose its catalog (env.unwrapped.catalog)"
    return k, slate_size


def _check_rollout(
    raw: gym.Env[Any, Any], seed: int, n_steps: int, k: int, slate_size: int | None
) -> str | None:
    """Random steps with every per-step check; returns the first repeated-candidates message."""
    rng = np.random.default_rng(seed)
    n_items = int(raw.catalog.n_items)
    features = getattr(raw.catalog, "item_features", None)
    repeated: str | None = None

    def check_observed(obs: Any, info: Any, where: str) -> str | None:
        _check_obs(obs, raw.observation_space, where)
        _check_info(info, k, slate_size, n_items, where)
        cand = info["candidate_ids"]
        if features is not None:
            shown = obs["candidates"][:, : features.shape[1]]
            assert np.array_equal(shown, features[cand]), (
                f"{where}: observation['candidates'] rows are not the catalog features of "
                f"info['candidate_ids'] {_short(cand)}"
            )
        if np.unique(cand).size != cand.size:
            vals, counts = np.unique(cand, return_counts=True)
            return (
                f"{where}: info['candidate_ids'] are not distinct: items "
                f"{vals[counts > 1].tolist()} repeat in {cand.tolist()}"
            )
        return None

    obs, info = raw.reset(seed=seed)
    where = f"reset(seed={seed})"
    repeated = check_observed(obs, info, where)
    _check_reset_info(info, where)
    for t in range(n_steps):
        cand = np.array(info["candidate_ids"], copy=True)
        action = random_action(raw.action_space, rng)
        obs, reward, terminated, truncated, info = raw.step(action)
        where = f"step {t} (action {np.asarray(action).tolist()}, after reset(seed={seed}))"
        assert isinstance(terminated, bool) and isinstance(truncated, bool), (
            f"{where}: terminated={terminated!r}, truncated={truncated!r} are not bools"
        )
        assert isinstance(reward, (float, int, np.floating, np.integer)) and np.isfinite(reward), (
            f"{where}: reward {reward!r} is not a finite number"
        )
        repeated = repeated or check_observed(obs, info, where)
        _check_slate(info, cand, action, raw.action_space, where)
        if terminated or truncated:
            obs, info = raw.reset()
            where = f"reset() after step {t}"
            repeated = repeated or check_observed(obs, info, where)
            _check_reset_info(info, where)
    return repeated


def _check_obs(obs: Any, space: spaces.Dict, where: str) -> None:
    assert isinstance(obs, dict), f"{where}: observation is a {type(obs).__name__}, not a dict"
    assert tuple(sorted(obs)) == OBS_KEYS, (
        f"{where}: observation keys {sorted(obs)} are not exactly {list(OBS_KEYS)}; extra keys "
        "may leak hidden user state"
    )
    for key, box in space.spaces.items():
        x = obs[key]
        assert isinstance(x, np.ndarray) and x.dtype == box.dtype and x.shape == box.shape, (
            f"{where}: observation[{key!r}] is {type(x).__name__} "
            f"{getattr(x, 'dtype', '')}{getattr(x, 'shape', '')}; expected {box.dtype}{box.shape}"
        )
        assert np.isfinite(x).all(), f"{where}: observation[{key!r}] has NaN or inf"
        low, high = x < box.low, x > box.high
        if low.any() or high.any():
            idx = tuple(int(i) for i in np.argwhere(low | high)[0])
            raise AssertionError(
                f"{where}: observation[{key!r}]{list(idx)} = {x[idx]!r} is outside its bounds "
                f"[{box.low[idx]}, {box.high[idx]}]"
            )
    assert space.contains(obs), f"{where}: observation is not in {space}"


def _check_info(info: Any, k: int, slate_size: int | None, n_items: int, where: str) -> None:
    assert isinstance(info, dict), f"{where}: info is a {type(info).__name__}, not a dict"
    missing = [key for key in INFO_KEYS if key not in info]
    assert not missing, f"{where}: info lacks the keys {missing}"
    for key in _INT_KEYS:
        v = np.asarray(info[key])
        assert v.shape == () and v.dtype.kind in "iu", (
            f"{where}: info[{key!r}] = {info[key]!r} is not an integer scalar"
        )
    left = np.asarray(info["left"])
    assert left.shape == () and left.dtype.kind == "b", (
        f"{where}: info['left'] = {info['left']!r} is not a bool"
    )
    watch = np.asarray(info["watch_time"])
    assert watch.shape == () and watch.dtype.kind in "fiu" and np.isfinite(watch) and watch >= 0, (
        f"{where}: info['watch_time'] = {info['watch_time']!r} is not a finite number >= 0"
    )
    assert isinstance(info["instruction"], str), (
        f"{where}: info['instruction'] = {info['instruction']!r} is not a str"
    )
    assert info["dt_days"] >= 0, f"{where}: info['dt_days'] = {info['dt_days']} is negative"
    cand = info["candidate_ids"]
    assert isinstance(cand, np.ndarray) and cand.shape == (k,) and cand.dtype.kind in "iu", (
        f"{where}: info['candidate_ids'] {_short(cand)} is not {k} integer item ids"
    )
    assert cand.min() >= 0 and cand.max() < n_items, (
        f"{where}: info['candidate_ids'] {_short(cand)} are not item ids in [0, {n_items})"
    )
    slate, clicks = info["slate_ids"], info["clicks"]
    size = slate_size if slate_size is not None else np.shape(slate)[0]
    assert isinstance(slate, np.ndarray) and slate.shape == (size,) and slate.dtype.kind in "iu", (
        f"{where}: info['slate_ids'] {_short(slate)} is not {size} integer item ids"
    )
    assert slate.min() >= -1 and slate.max() < n_items, (
        f"{where}: info['slate_ids'] {_short(slate)} are not item ids (or -1)"
    )
    assert isinstance(clicks, np.ndarray) and clicks.shape == (size,) and clicks.dtype == bool, (
        f"{where}: info['clicks'] {_short(clicks)} is not {size} bools"
    )
    assert not clicks[slate < 0].any(), (
        f"{where}: a slot that showed nothing (slate_ids {slate.tolist()}) was clicked "
        f"{clicks.tolist()}"
    )
    first = int(slate[np.argmax(clicks)]) if clicks.any() else -1
    assert info["clicked"] == first, (
        f"{where}: info['clicked'] = {info['clicked']} but the first clicked item of slate "
        f"{slate.tolist()} with clicks {clicks.tolist()} is {first}"
    )
    assert clicks.any() or watch == 0, f"{where}: watch_time {info['watch_time']} without a click"
    assert info["repeats"] == int((slate < 0).sum()) or slate.max() < 0, (
        f"{where}: info['repeats'] = {info['repeats']} but slate_ids {slate.tolist()} has "
        f"{int((slate < 0).sum())} hidden repeats"
    )
    assert info["return_days"] == -1 or (info["left"] and info["return_days"] >= 0), (
        f"{where}: info['return_days'] = {info['return_days']} for a user that did not leave"
    )


def _check_reset_info(info: dict[str, Any], where: str) -> None:
    assert (
        (info["slate_ids"] == -1).all()
        and not info["clicks"].any()
        and (info["clicked"] == -1 and info["repeats"] == 0 and not info["left"])
    ), (
        f"{where}: reset info shows a slate or feedback: slate_ids {info['slate_ids']}, clicks "
        f"{info['clicks']}, clicked {info['clicked']}, left {info['left']}"
    )


def _check_slate(
    info: dict[str, Any], cand: np.ndarray, action: Any, space: spaces.Space[Any], where: str
) -> None:
    """``slate_ids`` must be the previous ``candidate_ids`` the action picked, repeats -1."""
    if isinstance(space, spaces.Box):
        idx = np.argsort(-np.asarray(action), kind="stable")[: info["slate_ids"].shape[0]]
    else:
        idx = np.atleast_1d(np.asarray(action))
    expected = cand[idx]
    for j in range(1, expected.size):
        if expected[j] in expected[:j]:
            expected[j] = -1
    assert np.array_equal(info["slate_ids"], expected), (
        f"{where}: info['slate_ids'] {info['slate_ids'].tolist()} is not what the action picked "
        f"from the previous candidate_ids (expected {expected.tolist()}, repeats as -1)"
    )
    assert info["repeats"] == int((expected < 0).sum()), (
        f"{where}: info['repeats'] = {info['repeats']}, expected {int((expected < 0).sum())}"
    )


def _check_hidden_state_not_observed(raw: gym.Env[Any, Any], seed: int) -> None:
    """Scramble each hidden user field of a batched-core env; the observation must not move."""
    core = getattr(raw, "core", None)
    state = getattr(core, "state", None)
    if state is None or not hasattr(core, "observe"):
        return  # not a batched-core env: the key check above is all we can do
    rng = np.random.default_rng(seed)
    before = core.observe()
    for name in HIDDEN_STATE:
        value = getattr(state, name, None)
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            continue
        setattr(state, name, rng.uniform(-1, 1, value.shape).astype(value.dtype))
        try:
            diff = _diff(before, core.observe(), "observation")
        finally:
            setattr(state, name, value)
        assert diff is None, f"the observation depends on the hidden user state {name!r}: {diff}"


def _check_reset_needed(raw: gym.Env[Any, Any], seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    raw.reset(seed=seed + 1)
    for _ in range(MAX_EPISODE_STEPS):
        _, _, terminated, truncated, _ = raw.step(random_action(raw.action_space, rng))
        if terminated or truncated:
            break
    else:
        raise AssertionError(f"no episode ended within {MAX_EPISODE_STEPS} random steps")
    try:
        raw.step(random_action(raw.action_space, rng))
    except ResetNeeded:
        return
    raise AssertionError(
        "stepping after the episode ended did not raise gymnasium.error.ResetNeeded"
    )


def _check_same_seed(raw: gym.Env[Any, Any], seed: int) -> None:
    first = copy.deepcopy(raw.reset(seed=seed))
    rng = np.random.default_rng(seed)
    for _ in range(3):  # move the env on, then re-seed it
        _, _, terminated, truncated, _ = raw.step(random_action(raw.action_space, rng))
        if terminated or truncated:
            break
    again = raw.reset(seed=seed)
    diff = _diff(first, again, "(obs, info)")
    assert diff is None, f"reset(seed={seed}) twice gave different first observations: {diff}"


# ------------------------------------------------------------------- vector == single
def check_vector_matches_single(
    env_id: str,
    num_envs: int = 4,
    n_steps: int = 300,
    seed: int = 0,
    autoreset_mode: str = "next_step",
    **kwargs: Any,
) -> int:
    """Check that the native vector env steps exactly like ``num_envs`` single envs.

    The vector env (``gym.make_vec(..., vectorization_mode="vector_entry_point")``) is reset
    with ``seed`` and single env ``i`` with ``seed + i``; both get the same random actions.
    Observations, rewards, terminated, truncated and every key of the single env's info must
    be bit-identical.
    When slot ``i``'s episode ends, the single env is reset without a seed (its next user):
    in next-step mode the vector's next step must return that reset (reward 0, not done); in
    same-step mode the vector returns it at once, with the finished step's observation and
    info in ``info["final_obs"]`` / ``info["final_info"]``.

    Args:
        env_id: a registered recoworld id.
        num_envs: vector width.
        n_steps: vector steps to compare.
        seed: the vector env's seed; also seeds the random actions.
        autoreset_mode: ``"next_step"`` or ``"same_step"``.
        **kwargs: env arguments, given to both.

    Returns:
        How many episodes ended (over all slots), so a caller can make sure the autoreset
        path was exercised.

    Raises:
        AssertionError: naming the first step, slot and field that differ.
    """
    _require_asserts()
    venv = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=autoreset_mode,
        **kwargs,
    )
    singles = [gym.make(env_id, **kwargs) for _ in range(num_envs)]
    try:
        return _compare_vector(venv, singles, n_steps, seed)
    finally:
        venv.close()
        for env in singles:
            env.close()


def _compare_vector(
    venv: gym.vector.VectorEnv[Any, Any, Any],
    singles: list[gym.Env[Any, Any]],
    n_steps: int,
    seed: int,
) -> int:
    n = len(singles)
    mode = venv.metadata.get("autoreset_mode")
    assert mode in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP), (
        f"vector env metadata['autoreset_mode'] = {mode!r}; expected NEXT_STEP or SAME_STEP"
    )
    space = venv.single_action_space
    assert space == singles[0].action_space, (
        f"vector single_action_space {space} != single env action space {singles[0].action_space}"
    )
    assert venv.single_observation_space == singles[0].observation_space, (
        "vector single_observation_space differs from the single env's observation space"
    )
    rng = np.random.default_rng(seed)
    vobs, vinfo = venv.reset(seed=seed)
    for i, env in enumerate(singles):
        obs, info = env.reset(seed=seed + i)
        _assert_slot(f"reset(seed={seed}), env {i}", i, vobs, vinfo, obs, info)
    pending = np.zeros(n, bool)  # next-step mode: slot i resets at the next step
    ended = 0
    for t in range(n_steps):
        actions = [random_action(space, rng) for _ in range(n)]
        vobs, vrew, vterm, vtrunc, vinfo = venv.step(np.stack(actions))
        for i, env in enumerate(singles):
            where = f"step {t}, env {i} (action {actions[i].tolist()})"
            if mode == AutoresetMode.NEXT_STEP and pending[i]:
                obs, info = env.reset()
                reward, terminated, truncated = 0.0, False, False
                where += ", the autoreset step"
            else:
                obs, reward, terminated, truncated, info = env.step(actions[i])
            done = terminated or truncated
            ended += done
            if mode == AutoresetMode.NEXT_STEP:
                pending[i] = done
            elif done:
                _assert_final(where, i, vinfo, obs, info)
                obs, info = env.reset()
                where += ", same-step reset"
            else:
                assert not np.asarray(vinfo.get("_final_obs", np.zeros(n, bool)))[i], (
                    f"{where}: info['_final_obs'] is set although the episode goes on"
                )
            _assert_slot(where, i, vobs, vinfo, obs, info)
            for name, v, s in (
                ("reward", vrew, reward),
                ("terminated", vterm, terminated),
                ("truncated", vtrunc, truncated),
            ):
                assert v[i] == s, f"{where}: vector {name} {v[i]!r} != single {s!r}"
    return ended


def _assert_slot(
    where: str,
    i: int,
    vobs: dict[str, np.ndarray],
    vinfo: dict[str, Any],
    obs: dict[str, np.ndarray],
    info: dict[str, Any],
) -> None:
    diff = _diff({k: v[i] for k, v in vobs.items()}, obs, "observation")
    assert diff is None, f"{where}: vector != single: {diff}"
    for key in (*INFO_KEYS, *(k for k in info if k not in INFO_KEYS)):
        assert key in vinfo, f"{where}: vector info lacks {key!r}"
        diff = _diff(vinfo[key][i], info[key], f"info[{key!r}]")
        assert diff is None, f"{where}: vector != single: {diff}"


def _assert_final(
    where: str, i: int, vinfo: dict[str, Any], obs: dict[str, np.ndarray], info: dict[str, Any]
) -> None:
    for key in ("final_obs", "_final_obs", "final_info", "_final_info"):
        assert key in vinfo, f"{where}: same-step vector info lacks {key!r} at an episode's end"
    assert vinfo["_final_obs"][i] and vinfo["_final_info"][i], (
        f"{where}: info['_final_obs'] / ['_final_info'] not set for the finished env"
    )
    diff = _diff(vinfo["final_obs"][i], obs, "final_obs")
    assert diff is None, f"{where}: vector != single: {diff}"
    for key in (*INFO_KEYS, *(k for k in info if k not in INFO_KEYS)):
        assert key in vinfo["final_info"], f"{where}: vector final_info lacks {key!r}"
        diff = _diff(vinfo["final_info"][key][i], info[key], f"final_info[{key!r}]")
        assert diff is None, f"{where}: vector != single: {diff}"


# ------------------------------------------------------------------------ determinism
def check_determinism(env_id: str, seed: int = 0, n_steps: int = 200, **kwargs: Any) -> None:
    """Check that a seed fixes the trajectory bit for bit, and another seed changes it.

    The same action sequence (drawn once from ``numpy.random.default_rng(seed)``) is played
    on two fresh envs reset with ``seed``, on the first env re-seeded, and on an env reset
    with ``seed + 1``. Episodes that end are followed by ``reset()`` (the next user).

    Raises:
        AssertionError: naming the first step and field that differ (or that the different
            seed changed nothing).
    """
    _require_asserts()
    env_a, env_b = gym.make(env_id, **kwargs), gym.make(env_id, **kwargs)
    try:
        rng = np.random.default_rng(seed)
        actions = [random_action(env_a.action_space, rng) for _ in range(n_steps)]
        first = _trajectory(env_a, seed, actions)
        for label, other in (
            ("a second env", _trajectory(env_b, seed, actions)),
            ("the same env re-seeded", _trajectory(env_a, seed, actions)),
        ):
            for t, (x, y) in enumerate(zip(first, other, strict=True)):
                diff = _diff(x, y, "(obs, reward, terminated, truncated, info)")
                assert diff is None, (
                    f"seed {seed}, {label}: trajectories differ at "
                    f"{'reset' if t == 0 else f'step {t - 1}'}: {diff}"
                )
        changed = _trajectory(env_b, seed + 1, actions)
        assert any(_diff(x, y) is not None for x, y in zip(first, changed, strict=True)), (
            f"seeds {seed} and {seed + 1} gave identical trajectories over {n_steps} steps"
        )
    finally:
        env_a.close()
        env_b.close()


def _trajectory(env: gym.Env[Any, Any], seed: int, actions: list[Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [copy.deepcopy(env.reset(seed=seed))]
    for action in actions:
        step = copy.deepcopy(env.step(action))
        out.append(step)
        if step[2] or step[3]:
            out.append(copy.deepcopy(env.reset()))
    return out


# -------------------------------------------------------------------------- helpers
def _diff(a: Any, b: Any, path: str = "") -> str | None:
    """None when ``a`` and ``b`` are equal bit for bit (shapes and array dtypes included),
    else a description of the first difference."""
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)):
            return f"{path}: {type(a).__name__} vs {type(b).__name__}"
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            d = _diff(a[key], b[key], f"{path}[{key!r}]")
            if d:
                return d
        return None
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        if len(a) != len(b):
            return f"{path}: length {len(a)} vs {len(b)}"
        for j, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _diff(x, y, f"{path}[{j}]")
            if d:
                return d
        return None
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return f"{path}: shape {x.shape} vs {y.shape}"
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype != b.dtype:
        return f"{path}: dtype {a.dtype} vs {b.dtype}"
    if x.dtype.kind == "f" and y.dtype.kind == "f":
        equal = (x == y) | (np.isnan(x) & np.isnan(y))
    else:
        equal = x == y
    if not np.all(equal):
        return f"{path}: {_short(x)} != {_short(y)}"
    return None


def _short(a: Any) -> str:
    text = np.array2string(np.asarray(a), threshold=8, edgeitems=2, separator=", ")
    return text if len(text) < 120 else text[:117] + "..."
