"""Golden trajectories pin each env version: a change of dynamics must bump the version.

Regenerate (only together with a version bump) with ``python tests/test_golden.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import recoworld  # noqa: F401  (registers the ids)

GOLDEN = Path(__file__).resolve().parent / "golden"
IDS = [
    "recoworld/Engagement-v0",
    "recoworld/NoveltySeeking-v0",
    "recoworld/Retention-v0",
    "recoworld/UserAuthor-v0",
]
KWARGS = {"n_items": 300, "num_candidates": 20, "slate_size": 3}


def trajectory(env_id: str, steps: int = 120, seed: int = 11) -> dict[str, list]:
    env = gym.make(env_id, **KWARGS)
    gen = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    out: dict[str, list] = {
        "candidates": [info["candidate_ids"][:5].tolist()],
        "slate": [],
        "clicked": [],
        "reward": [],
        "left": [],
        "done": [],
        "instr": [],
    }
    for _ in range(steps):
        action = gen.permutation(KWARGS["num_candidates"])[: KWARGS["slate_size"]]
        _, reward, term, trunc, info = env.step(action)
        out["slate"].append(info["slate_ids"].tolist())
        out["clicked"].append(int(info["clicked"]))
        out["reward"].append(round(float(reward), 4))
        out["left"].append(bool(info["left"]))
        out["done"].append(bool(term or trunc))
        out["instr"].append(info["instruction"])
        if term or trunc:
            _, info = env.reset()
        out["candidates"].append(info["candidate_ids"][:5].tolist())
    return out


@pytest.mark.parametrize("env_id", IDS)
def test_golden_trajectory(env_id: str) -> None:
    path = GOLDEN / (env_id.split("/")[1] + ".json")
    expected = json.loads(path.read_text())
    got = trajectory(env_id)
    for key in ("candidates", "slate", "clicked", "left", "done", "instr"):
        assert got[key] == expected[key], f"{env_id}: {key} changed; bump the env version"
    np.testing.assert_allclose(got["reward"], expected["reward"], atol=2e-3)


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for env_id in IDS:
        (GOLDEN / (env_id.split("/")[1] + ".json")).write_text(json.dumps(trajectory(env_id)))
    sys.exit(0)
