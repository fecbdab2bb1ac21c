"""Trained SB3 models as recommenders: `SB3Recommender` and `load_policy`."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from recoworld.agents.sb3.spaces import space_difference
from recoworld.agents.sb3.vec_env import space_of
from recoworld.errors import ConfigError, require
from recoworld.types import Recommendation

METADATA_NAME = "recoworld.json"  # stored inside model.zip by `train` (SB3 ignores it)


class SB3Recommender:
    """Adapts a trained SB3 model to the `Recommender` protocol.

    ``recommend(obs, info)`` calls ``model.predict(obs, deterministic=True)`` on the batched
    observation. The deterministic policy's propensities are 1 (flagged ``deterministic``,
    so off-policy estimators refuse them); with ``deterministic=False`` the action is sampled
    and ``propensity`` holds each shown item's probability at its slot under the policy
    (for `CandidatePolicy` slates: given the items already placed in earlier slots).

    Args:
        model: a trained SB3 algorithm (``PPO``, ``A2C``, ``DQN``...) or policy.
        deterministic: greedy actions (default) or samples.
    """

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        if not hasattr(model, "predict"):
            raise ConfigError(f"{type(model).__name__} has no predict(); pass an SB3 model")
        self.model = model
        self.policy = getattr(model, "policy", model)
        self.deterministic = deterministic

    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        n = int(np.asarray(obs["candidates"]).shape[0])
        if self.deterministic:
            action, _ = self.model.predict(obs, deterministic=True)
            slots = 1 if action.ndim == 1 else action.shape[1]
            return Recommendation(action, np.ones((n, slots)), True)
        return self._sample(obs, n)

    def _sample(self, obs: dict[str, np.ndarray], n: int) -> Recommendation:
        import torch as th

        policy = self.policy
        with th.no_grad():
            tensor, _ = policy.obs_to_tensor(obs)
            dist = policy.get_distribution(tensor)
            action = dist.get_actions(deterministic=False)
            prop = _slot_probabilities(dist, action)
        a = action.cpu().numpy().reshape((n, *policy.action_space.shape))
        return Recommendation(a, prop.reshape(n, -1))

    def score(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        """``(n, K)`` candidate scores: the shared scorer of `CandidatePolicy`, or the logits of
        a ``Discrete`` policy."""
        import torch as th

        from recoworld.agents.sb3.policies import CandidatePolicy

        policy = self.policy
        with th.no_grad():
            tensor, _ = policy.obs_to_tensor(obs)
            if isinstance(policy, CandidatePolicy):
                return policy.action_net(policy.extract_features(tensor)).cpu().numpy()
            dist = policy.get_distribution(tensor)
            inner: Any = getattr(dist, "distribution", None)
            if hasattr(inner, "logits"):
                return inner.logits.cpu().numpy()
        raise ConfigError(
            f"{type(policy).__name__} has no per-candidate scores; train with CandidatePolicy"
        )

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Stateless (recurrent policies are not supported)."""


def _slot_probabilities(dist: Any, action: Any) -> np.ndarray:
    """Probability of each chosen item at its slot, ``(n, slate_size)``."""
    import torch as th

    from recoworld.agents.sb3.policies import SlateDistribution

    if isinstance(dist, SlateDistribution):
        assert dist.scores is not None
        taken = th.zeros_like(dist.scores, dtype=th.bool)
        probs = []
        for slot in range(dist.slate_size):
            p = th.softmax(dist.scores.masked_fill(taken, float("-inf")), 1)
            a = action[:, slot : slot + 1]
            probs.append(p.gather(1, a))
            taken = taken.scatter(1, a, True)
        return th.cat(probs, 1).cpu().numpy()
    inner = dist.distribution
    if isinstance(inner, list):  # MultiCategorical: one categorical per slot
        cols = [d.probs.gather(1, action[:, i : i + 1].long()) for i, d in enumerate(inner)]
        return th.cat(cols, 1).cpu().numpy()
    if hasattr(inner, "probs"):
        return inner.probs.gather(1, action.long().reshape(-1, 1)).cpu().numpy()
    raise ConfigError(f"no slot propensities for {type(dist).__name__}; use deterministic=True")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The run metadata saved with a model: ``recoworld.json`` inside the zip, else the
    ``run.json`` of its run folder (for checkpoints); ``{}`` when neither exists."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            if METADATA_NAME in zf.namelist():
                return json.loads(zf.read(METADATA_NAME))
    except (zipfile.BadZipFile, FileNotFoundError):
        return {}
    for folder in (path.parent, path.parent.parent):
        run = folder / "run.json"
        if run.is_file():
            return json.loads(run.read_text())
    return {}


def write_metadata(path: str | Path, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` as ``recoworld.json`` inside the model zip at ``path``."""
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(METADATA_NAME, json.dumps(metadata, indent=2, default=repr))


def load_policy(path: str | Path, env: Any, algo: str | None = None, device: str = "cpu") -> Any:
    """Load a saved SB3 model for ``env``, checking that their spaces match.

    Args:
        path: ``model.zip`` (or a run folder holding one) written by `train` or ``model.save``.
        env: the env it will act in: an id, a single or vector gymnasium env, or an SB3 VecEnv.
        algo: registered algorithm name (``"ppo"``, ``"a2c"``, ``"dqn"``...); read from the
            model's metadata when None.
        device: torch device.

    Returns:
        The model (wrap it in `SB3Recommender` to use it as a recommender).

    Raises:
        ConfigError: no such file; unknown algorithm; the observation or action space of the
            saved model differs from the env's (the message names the space and both values).
    """
    require("stable_baselines3", "rl")
    from stable_baselines3.common.save_util import load_from_zip_file

    from recoworld.agents.sb3.train import get_algorithm

    path = Path(path)
    if path.is_dir():
        path = path / "model.zip"
    if not path.is_file():
        raise ConfigError(f"no saved model at {path}; give the model.zip written by training")
    meta = read_metadata(path)
    name = algo or meta.get("algo")
    if name is None:
        raise ConfigError(f"{path} does not say which algorithm saved it; pass algo='ppo' etc.")
    spec = get_algorithm(name)
    if isinstance(env, str):
        import gymnasium as gym

        import recoworld  # noqa: F401  (registers the ids)

        env = gym.make(env)
    data, _, _ = load_from_zip_file(path, device=device, load_data=True)
    data = data or {}
    obs_space, act_space = space_of(env)
    for which, saved, current in (
        ("observation", data.get("observation_space"), obs_space),
        ("action", data.get("action_space"), act_space),
    ):
        diff = space_difference(saved, current) if saved is not None else None
        if diff:
            raise ConfigError(
                f"the {which} space of the saved model {path.name} differs from the env's: "
                f"{diff}. Use an env made with the same arguments as in training"
                + (f" ({meta['env_id']}, {meta.get('env_kwargs', {})})" if "env_id" in meta else "")
            )
    return spec.load(path, device)
