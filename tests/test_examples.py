"""Every example runs with a tiny budget, so none can rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "quickstart.py": ["--steps", "40"],
    "compare_recommenders.py": ["--users", "50", "--steps", "40"],
    "instruction_following.py": ["--users", "16", "--seeds", "0", "--days", "2"],
    "train_ppo.py": ["--timesteps", "256"],
    "train_hrl.py": ["--timesteps", "256", "--users", "16"],
    "train_rliv.py": ["--timesteps", "256"],
    "calibrate_from_logs.py": ["--users", "60", "--days", "2", "--prior-draws", "16"],
    "llm_dual_loop.py": ["--steps", "3", "--users", "2"],
}


def test_every_example_has_a_tiny_budget() -> None:
    found = {p.name for p in (ROOT / "examples").glob("*.py")}
    assert found == set(TINY), f"add a tiny budget for {found - set(TINY)} in TINY"


@pytest.mark.parametrize("name", sorted(TINY))
def test_example_runs(name: str) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *TINY[name]],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()
