"""`check_recommender`: the conformance check every recommender must pass.

Like `recoworld.testing.check_env` for environments, it raises `AssertionError` naming the
first violation: the configuration (users per batch, slate size), the step and the values.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from recoworld.agents.base import Recommender, make_recommender
from recoworld.testing.checks import _diff, _require_asserts, _short
from recoworld.types import Recommendation

RecommenderSpec = str | Recommender | Callable[[Any, "int | None"], Recommender]
"""A registered name, a factory ``(env, seed) -> Recommender``, or a built recommender."""


def check_recommender(
    recommender_or_name: RecommenderSpec,
    env_id: str = "recoworld/Engagement-v0",
    num_envs: int = 8,
    n_steps: int = 50,
    seed: int = 0,
    **env_kwargs: Any,
) -> None:
    """Check a recommender against the `Recommender` protocol on a native vector env.

    The recommender runs the runner's loop (``recommend`` → ``env.step`` → ``update`` →
    ``reset(terminated | truncated)``, next-step autoreset) for ``n_steps`` steps, in these
    configurations: ``num_envs`` users; one user; and, when it is given by name or factory
    (a built recommender is tied to one action space), ``num_envs`` users with
    ``slate_size=1`` (a ``Discrete`` action space). At every step:

    - ``recommend`` returns a `Recommendation` and leaves ``obs`` and ``info`` untouched;
    - ``action`` is integer, shaped ``(n, slate_size)`` (``(n,)`` when ``slate_size == 1``),
      inside ``[0, K)``, with distinct indices within each slate;
    - ``propensity`` is ``(n, slate_size)``, finite and in ``(0, 1]``, and all ones when
      ``deterministic`` is set;
    - the env accepts the action; ``update`` and ``reset`` (where present) do not fail.

    After the last step: ``score`` (where present) is ``(n, K)`` without NaN, ``reset(None)``
    works, and ``select(keep)`` (where present) keeps a working recommender for the kept
    rows. Finally the first configuration runs again from scratch with the same seeds and
    must give the same actions and propensities, bit for bit.

    Args:
        recommender_or_name: a registered name (`recoworld.agents.base.make_recommender`), a
            factory ``(env, seed) -> Recommender``, or a built recommender (deep-copied for
            each run, so it must not be bound to a particular env; pass the oracle by name).
        env_id: a registered recoworld id.
        num_envs: users per batch in the main configuration.
        n_steps: steps per configuration.
        seed: seeds the env (``reset(seed=seed)``) and the recommender (name or factory).
        **env_kwargs: env arguments (e.g. ``slate_size``, ``num_candidates``).

    Raises:
        AssertionError: naming the configuration, step and values of the first violation.
    """
    _require_asserts()
    label, build = _builder(recommender_or_name, seed)
    configs: list[tuple[int, dict[str, Any]]] = [(num_envs, env_kwargs)]
    if num_envs != 1:
        configs.append((1, env_kwargs))
    if label != "instance" and env_kwargs.get("slate_size") != 1:
        configs.append((num_envs, {**env_kwargs, "slate_size": 1}))
    first: list[tuple[np.ndarray, np.ndarray]] = []
    for i, (n, kwargs) in enumerate(configs):
        trace = _run(build, env_id, n, n_steps, seed, kwargs, f"{label}, {_where(n, kwargs)}")
        if i == 0:
            first = trace
    n, kwargs = configs[0]
    again = _run(build, env_id, n, n_steps, seed, kwargs, f"{label} (rerun), {_where(n, kwargs)}")
    for t, (a, b) in enumerate(zip(first, again, strict=True)):
        diff = _diff(a, b, "(action, propensity)")
        assert diff is None, (
            f"{label}, {_where(n, kwargs)}: not deterministic: a second run with seed {seed} "
            f"differs at step {t}: {diff}"
        )


def _builder(spec: RecommenderSpec, seed: int) -> tuple[str, Callable[[Any], Recommender]]:
    """A label and a function that builds a fresh recommender for an env."""
    if isinstance(spec, str):
        return repr(spec), lambda env: make_recommender(spec, env, seed)
    if hasattr(spec, "recommend"):
        return "instance", lambda env: copy.deepcopy(spec)
    if callable(spec):
        return getattr(spec, "__name__", "factory"), lambda env: spec(env, seed)
    raise TypeError(
        f"{spec!r} is not a recommender name, a factory (env, seed) -> Recommender, or a "
        "recommender"
    )


def _where(n: int, kwargs: dict[str, Any]) -> str:
    extra = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"num_envs={n}" + (f", {extra}" if extra else "")


def _run(
    build: Callable[[Any], Recommender],
    env_id: str,
    n: int,
    n_steps: int,
    seed: int,
    kwargs: dict[str, Any],
    label: str,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One rollout with every per-step check; returns the (action, propensity) trace."""
    env = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    try:
        rec = build(env)
        k = int(env.single_observation_space["candidates"].shape[0])
        space = env.single_action_space
        slate_size = 1 if isinstance(space, gym.spaces.Discrete) else int(space.nvec.shape[0])
        obs, info = env.reset(seed=seed)
        trace = []
        for t in range(n_steps):
            where = f"{label}, step {t}"
            action, prop = _recommend(rec, obs, info, n, k, slate_size, where)
            trace.append((action, prop))
            try:
                obs2, _, term, trunc, info2 = env.step(action)
            except Exception as exc:
                raise AssertionError(
                    f"{where}: the env rejected action {_short(action)}: {exc}"
                ) from exc
            _call(rec, "update", where, obs, info, action, info2)
            _call(rec, "reset", where, term | trunc)
            obs, info = obs2, info2
        _check_after(rec, obs, info, n, k, slate_size, f"{label}, after step {n_steps - 1}")
        return trace
    finally:
        env.close()


def _call(rec: Any, method: str, where: str, *args: Any) -> Any:
    fn = getattr(rec, method, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception as exc:
        raise AssertionError(f"{where}: {method}() raised {type(exc).__name__}: {exc}") from exc


def _recommend(
    rec: Recommender,
    obs: dict[str, np.ndarray],
    info: dict[str, Any],
    n: int,
    k: int,
    slate_size: int,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    before = copy.deepcopy((obs, info))
    out = _call(rec, "recommend", where, obs, info)
    diff = _diff(before, (obs, info), "(obs, info)")
    assert diff is None, f"{where}: recommend() modified its input: {diff}"
    assert isinstance(out, Recommendation), (
        f"{where}: recommend() returned {type(out).__name__}, not a Recommendation"
    )
    action = np.asarray(out.action)
    shape = (n,) if slate_size == 1 else (n, slate_size)
    assert action.dtype.kind in "iu" and action.shape == shape, (
        f"{where}: action {_short(action)} (dtype {action.dtype}, shape {action.shape}) is not "
        f"integer candidate indices of shape {shape}"
    )
    assert action.min() >= 0 and action.max() < k, (
        f"{where}: action {_short(action)} has indices outside [0, {k})"
    )
    slates = np.sort(action.reshape(n, slate_size), axis=1)
    repeated = (slates[:, 1:] == slates[:, :-1]).any(1)
    assert not repeated.any(), (
        f"{where}: slate of user {int(np.argmax(repeated))} repeats a candidate: "
        f"{action.reshape(n, slate_size)[np.argmax(repeated)].tolist()}"
    )
    prop = np.asarray(out.propensity)
    assert prop.shape == (n, slate_size) and prop.dtype.kind in "fiu", (
        f"{where}: propensity {_short(prop)} (shape {prop.shape}) is not {(n, slate_size)} numbers"
    )
    bad = ~np.isfinite(prop) | (prop <= 0) | (prop > 1)
    assert not bad.any(), (
        f"{where}: propensity {_short(prop)} is not in (0, 1] at user "
        f"{int(np.argwhere(bad)[0][0])}, slot {int(np.argwhere(bad)[0][1])}"
    )
    assert not out.deterministic or (prop == 1).all(), (
        f"{where}: deterministic=True but the propensities {_short(prop)} are not all 1"
    )
    return action.copy(), prop.copy()


def _check_after(
    rec: Any,
    obs: dict[str, np.ndarray],
    info: dict[str, Any],
    n: int,
    k: int,
    slate_size: int,
    where: str,
) -> None:
    if getattr(rec, "score", None) is not None:
        score = np.asarray(_call(rec, "score", where, obs, info))
        assert score.shape == (n, k) and not np.isnan(score).any(), (
            f"{where}: score() gave {_short(score)} of shape {score.shape}; expected {(n, k)} "
            "numbers without NaN"
        )
    _call(rec, "reset", where, None)
    if getattr(rec, "select", None) is None:
        return
    keep = np.arange(n) < max(1, n // 2)
    _call(rec, "select", where, keep)
    sub_obs = {key: v[keep] for key, v in obs.items()}
    sub_info = {key: np.asarray(v)[keep] for key, v in info.items() if np.ndim(v) >= 1}
    _recommend(
        rec, sub_obs, sub_info, int(keep.sum()), k, slate_size, f"{where}, after select(keep)"
    )
