"""`train`: one Stable-Baselines3 run on a recoworld env, with everything a run folder needs.

A run folder holds::

    run.json              what ran: algorithm, env, seeds, budget, versions, final evaluation
    model.zip             the final model (with recoworld.json inside: algorithm and env)
    episodes.csv          one row per finished training episode (step, return, length)
    logs/progress.csv     SB3's logger (rollout/..., train/..., eval/...); TensorBoard event
                          files beside it when the ``tensorboard`` package is installed
    checkpoints/          model_<steps>_steps.zip every ``checkpoint_freq`` steps
    eval/evaluations.npz  returns of every evaluation (the same users each time)
    learning_curve.png    training and evaluation returns against environment steps

Algorithms are looked up by name in `ALGORITHMS`; other modules add theirs with
`register_algorithm` (the HRL and RLIV agents do).
"""

from __future__ import annotations

import importlib.util
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.errors import ConfigError, require

EVAL_SEED_OFFSET = 1_000_003  # evaluation users never coincide with training users
DEFAULT_EVAL_FREQ = 10_000
DEFAULT_CHECKPOINT_FREQ = 50_000
# Discount of the built-in algorithms: a horizon of about 20 steps, one session's length in
# the retention preset, so the return bonus at a session's end is seen from its start without
# the variance of SB3's 0.99 (a 100-step horizon, several sessions). In a sweep of PPO on
# Retention-v0 (200k steps) it gave the best return; see benchmarks/ppo_retention.py.
DEFAULT_GAMMA = 0.95

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Algorithm:
    """A registered training algorithm.

    Attributes:
        make: ``make(env, *, seed, total_timesteps, policy, policy_kwargs, device, verbose,
            **algo_kwargs)`` returns a model with SB3's interface (``learn``, ``save``,
            ``predict``, ``set_logger``); ``policy`` / ``policy_kwargs`` None mean the
            algorithm's defaults; ``total_timesteps`` is the budget, for defaults that depend
            on it.
        load: ``load(path, device)`` returns a saved model.
        description: one line for listings.
    """

    make: Callable[..., Any]
    load: Callable[[Path, str], Any]
    description: str = ""


ALGORITHMS: dict[str, Algorithm] = {}

# modules that call register_algorithm when imported (imported by get_algorithm, lazily)
ALGORITHM_MODULES: list[str] = ["recoworld.agents.hrl", "recoworld.agents.rliv"]


def register_algorithm(
    name: str,
    fn: Callable[..., Any],
    load: Callable[[Path, str], Any] | None = None,
    description: str = "",
) -> None:
    """Make ``train(name, ...)`` build its model with ``fn`` (see `Algorithm.make`).

    ``load(path, device)`` reads a saved model back (what `load_policy` calls); without it,
    models of this algorithm can be trained but not loaded by name.
    """
    if load is None:

        def load(path: Path, device: str) -> Any:
            raise ConfigError(f"algorithm {name!r} was registered without a load function")

    ALGORITHMS[name] = Algorithm(fn, load, description)


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm ``name``; unknown names list the valid ones."""
    _load_algorithm_modules()
    try:
        return ALGORITHMS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}"
        ) from None


def _load_algorithm_modules() -> None:
    import importlib

    for module in ALGORITHM_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # not written yet, or a missing extra
            if exc.name != module:
                raise


# --- the built-in SB3 algorithms --------------------------------------------------------


def _make_ppo(
    env: Any,
    *,
    seed: int,
    total_timesteps: int | None = None,
    policy: Any = None,
    policy_kwargs: Any = None,
    device: str = "cpu",
    verbose: int = 0,
    **algo_kwargs: Any,
) -> Any:
    from stable_baselines3 import PPO

    from recoworld.agents.sb3.policies import CandidatePolicy

    # rollouts of 2,048 user-steps (shorter for a budget below that, which SB3 would round
    # up to a whole rollout); minibatches of 256 and 5 epochs instead of SB3's 64 and 10:
    # an observation holds K candidates, so updates dominate the cost, and this cuts it ~4x
    n = env.num_envs
    n_steps = max(2048 // n, 1)
    if total_timesteps:
        n_steps = max(min(n_steps, total_timesteps // n), 8)
    params = {
        "gamma": DEFAULT_GAMMA,
        "n_steps": n_steps,
        "batch_size": _batch_size(n_steps * n, 256),
        "n_epochs": 5,
        **algo_kwargs,
    }
    return PPO(
        policy or CandidatePolicy,
        env,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device=device,
        verbose=verbose,
        **params,
    )


def _batch_size(rollout: int, target: int) -> int:
    """``target`` if it divides the rollout, else the rollout's largest divisor among
    ``target, target/2, ...`` down to 64, else the whole rollout (no ragged minibatches)."""
    size = target
    while size >= 64:
        if rollout % size == 0:
            return size
        size //= 2
    return rollout


def _make_a2c(
    env: Any,
    *,
    seed: int,
    total_timesteps: int | None = None,
    policy: Any = None,
    policy_kwargs: Any = None,
    device: str = "cpu",
    verbose: int = 0,
    **algo_kwargs: Any,
) -> Any:
    from stable_baselines3 import A2C

    from recoworld.agents.sb3.policies import CandidatePolicy

    params = {"gamma": DEFAULT_GAMMA, "ent_coef": 0.01, **algo_kwargs}
    return A2C(
        policy or CandidatePolicy,
        env,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device=device,
        verbose=verbose,
        **params,
    )


def _make_dqn(
    env: Any,
    *,
    seed: int,
    total_timesteps: int | None = None,
    policy: Any = None,
    policy_kwargs: Any = None,
    device: str = "cpu",
    verbose: int = 0,
    **algo_kwargs: Any,
) -> Any:
    from gymnasium import spaces
    from stable_baselines3 import DQN

    from recoworld.agents.sb3.extractor import extractor_kwargs

    if not isinstance(env.action_space, spaces.Discrete):
        raise ConfigError(
            f"DQN needs a Discrete action space (one item per step), but the env's is "
            f"{env.action_space}; make the env with slate_size=1, or use 'ppo' / 'a2c' for slates"
        )
    kwargs = extractor_kwargs(net_arch=[64], **(policy_kwargs or {}))
    params = {
        "gamma": DEFAULT_GAMMA,
        "buffer_size": 100_000,
        "learning_starts": min(1_000, max(total_timesteps // 10, 1)) if total_timesteps else 1_000,
        "train_freq": 4,
        "target_update_interval": 2_000,
        "exploration_fraction": 0.2,
        **algo_kwargs,
    }
    return DQN(
        policy or "MultiInputPolicy",
        env,
        policy_kwargs=kwargs,
        seed=seed,
        device=device,
        verbose=verbose,
        **params,
    )


def _sb3_loader(cls_name: str) -> Callable[[Path, str], Any]:
    def load(path: Path, device: str) -> Any:
        import stable_baselines3

        return getattr(stable_baselines3, cls_name).load(path, device=device)

    return load


register_algorithm("ppo", _make_ppo, _sb3_loader("PPO"), "SB3 PPO with CandidatePolicy")
register_algorithm("a2c", _make_a2c, _sb3_loader("A2C"), "SB3 A2C with CandidatePolicy")
register_algorithm("dqn", _make_dqn, _sb3_loader("DQN"), "SB3 DQN (slate_size=1 only)")


# --- train --------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What `train` produced.

    Attributes:
        model: the trained model.
        out_dir: the run folder.
        model_path: ``out_dir / "model.zip"``.
        files: name -> path of everything written (logs, checkpoints, plot...).
        eval_return: ``(mean, 95% CI half-width)`` of the final evaluation's episode returns.
        seconds: wall time of training.
    """

    model: Any
    out_dir: Path
    model_path: Path
    files: dict[str, Path] = field(default_factory=dict)
    eval_return: tuple[float, float] = (float("nan"), float("nan"))
    seconds: float = 0.0


def seed_everything(seed: int, torch_threads: int | None = 1) -> None:
    """Seed Python, numpy and torch (CleanRL style) and fix torch's CPU threads.

    One thread is the default because these networks are small: on a busy 2-core machine
    torch's multi-threaded kernels spin-wait and run tens of times slower.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - SB3 and some wrappers still draw from it
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    if torch_threads:
        torch.set_num_threads(torch_threads)


def default_run_dir(algo: str, env_id: str, seed: int) -> Path:
    """``runs/<algo>-<env>-s<seed>-<time>``: a name that says what ran."""
    env = env_id.split(":")[-1].split("/")[-1]
    return Path("runs") / f"{algo}-{env}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(
    algo: str,
    env_id: str,
    total_timesteps: int,
    seed: int = 0,
    n_envs: int = 8,
    out_dir: str | Path | None = None,
    policy_kwargs: dict[str, Any] | None = None,
    eval_freq: int = DEFAULT_EVAL_FREQ,
    eval_episodes: int = 32,
    checkpoint_freq: int = DEFAULT_CHECKPOINT_FREQ,
    algo_kwargs: dict[str, Any] | None = None,
    policy: Any = None,
    progress: ProgressFn | None = None,
    plot: bool = True,
    normalize_reward: bool = True,
    device: str = "cpu",
    torch_threads: int | None = 1,
    verbose: int = 0,
    **env_kwargs: Any,
) -> TrainResult:
    """Train ``algo`` on ``env_id`` for ``total_timesteps`` user-steps and write a run folder.

    Args:
        algo: a name in `ALGORITHMS` (``"ppo"``, ``"a2c"``, ``"dqn"``, ...).
        env_id: a registered id, e.g. ``"recoworld/Retention-v0"``.
        total_timesteps: user-steps of training (all ``n_envs`` users together).
        seed: seeds Python, numpy, torch, the model and the training users (slot ``i`` of the
            first reset gets ``seed + i``); evaluation users get ``seed + EVAL_SEED_OFFSET``.
        n_envs: users stepped together.
        out_dir: the run folder (default `default_run_dir`).
        policy_kwargs: SB3 ``policy_kwargs`` (e.g. ``{"features_extractor_kwargs":
            {"embed_dim": 64}}``).
        eval_freq: user-steps between evaluations (one more at the end).
        eval_episodes: episodes per evaluation, on the same users every time.
        checkpoint_freq: user-steps between checkpoints.
        algo_kwargs: algorithm hyperparameters (``learning_rate``, ``n_steps``...).
        policy: the SB3 policy (default: the algorithm's; `CandidatePolicy` for PPO and A2C).
        progress: ``progress(done, total, label)``, e.g. `recoworld.cli.progress.ProgressBar`.
        plot: write ``learning_curve.png`` (needs the ``plot`` extra).
        normalize_reward: scale training rewards by a running estimate of the discounted
            return's standard deviation (SB3's `VecNormalize`, observations untouched).
            Returns here are in the tens, and a critic whose output starts near 0 and
            moves about one learning rate per Adam step would need thousands of updates to
            reach them; logged and evaluated returns stay unscaled.
        device: torch device.
        torch_threads: torch CPU threads (None leaves torch's setting).
        verbose: SB3 verbosity; 1 also prints the logger's tables.
        **env_kwargs: `recoworld.envs.EnvConfig` fields.

    Returns:
        A `TrainResult`.

    Raises:
        ConfigError: unknown algorithm (listing the valid ones), bad budget, DQN on slates.
        recoworld.agents.sb3.vec_env.NonFiniteRewardError: the env produced a NaN reward.
    """
    require("stable_baselines3", "rl")
    spec = get_algorithm(algo)
    for name, value in (
        ("total_timesteps", total_timesteps),
        ("n_envs", n_envs),
        ("eval_episodes", eval_episodes),
    ):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} must be a positive integer")
    if plot:
        require("matplotlib", "plot")
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from recoworld.agents.sb3.callbacks import (
        EpisodeLogCallback,
        ProgressCallback,
        SeededEvalCallback,
    )
    from recoworld.agents.sb3.recommender import write_metadata
    from recoworld.agents.sb3.vec_env import to_sb3_vec_env

    seed_everything(seed, torch_threads)
    env: Any = VecMonitor(to_sb3_vec_env(env_id, n_envs, seed, **env_kwargs))
    eval_seed = seed + EVAL_SEED_OFFSET
    eval_env: Any = VecMonitor(
        to_sb3_vec_env(env_id, min(n_envs, eval_episodes), eval_seed, **env_kwargs)
    )
    if normalize_reward:  # VecMonitor below it records the raw rewards
        gamma = (algo_kwargs or {}).get("gamma", DEFAULT_GAMMA)
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=gamma)
        # the eval env must be wrapped alike for EvalCallback; it never scales anything
        eval_env = VecNormalize(eval_env, training=False, norm_obs=False, norm_reward=False)
    model = spec.make(
        env,
        seed=seed,
        total_timesteps=total_timesteps,
        policy=policy,
        policy_kwargs=policy_kwargs,
        device=device,
        verbose=verbose,
        **(algo_kwargs or {}),
    )
    out = Path(out_dir) if out_dir is not None else default_run_dir(algo, env_id, seed)
    out.mkdir(parents=True, exist_ok=True)  # only now: a bad configuration leaves no folder
    formats = ["csv"] + (["stdout"] if verbose else [])
    if importlib.util.find_spec("tensorboard") is not None:
        formats.append("tensorboard")
    model.set_logger(configure(str(out / "logs"), formats))
    evaluator = SeededEvalCallback(
        eval_env,
        eval_seed=eval_seed,
        n_eval_episodes=eval_episodes,
        eval_freq=max(min(eval_freq, total_timesteps) // n_envs, 1),
        log_path=str(out / "eval"),
        deterministic=True,
        verbose=verbose,
    )
    callbacks = [
        EpisodeLogCallback(out / "episodes.csv"),
        CheckpointCallback(max(checkpoint_freq // n_envs, 1), str(out / "checkpoints"), "model"),
        evaluator,
    ]
    if progress is not None:
        callbacks.append(ProgressCallback(progress, total_timesteps))
    meta = {
        "algo": algo.lower(),
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "seed": seed,
        "n_envs": n_envs,
        "total_timesteps": total_timesteps,
        "eval_seed": eval_seed,
        "eval_episodes": eval_episodes,
        "algo_kwargs": algo_kwargs or {},
        "policy_kwargs": policy_kwargs or {},
        "normalize_reward": normalize_reward,
        "versions": _versions(),
    }
    start = time.monotonic()
    try:
        model.learn(total_timesteps, callback=CallbackList(callbacks))
    finally:
        env.close()
        eval_env.close()
    seconds = time.monotonic() - start
    model_path = out / "model.zip"
    model.save(model_path)
    write_metadata(model_path, meta)
    eval_return = evaluator.last_return()
    meta.update(seconds=round(seconds, 1), final_eval_return=list(eval_return))
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=repr))
    files = {
        "model": model_path,
        "run": out / "run.json",
        "episodes": out / "episodes.csv",
        "logs": out / "logs" / "progress.csv",
        "checkpoints": out / "checkpoints",
        "evaluations": out / "eval" / "evaluations.npz",
    }
    if plot:
        from recoworld.agents.sb3.curves import plot_learning_curve

        files["learning_curve"] = plot_learning_curve(out)
    if "tensorboard" in formats:
        files["tensorboard"] = out / "logs"
    return TrainResult(model, out, model_path, files, eval_return, seconds)


def _versions() -> dict[str, str]:
    import gymnasium
    import stable_baselines3
    import torch

    import recoworld

    return {
        "recoworld": recoworld.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
    }
