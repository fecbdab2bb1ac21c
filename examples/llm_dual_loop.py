"""The RecoWorld dual-view loop: LLM users x an LLM agentic recommender, on a local server.

Starts the local OpenAI-compatible fake server (`recoworld.testing.llm_server`), makes the
vector env ``recoworld/LLMUsers-v0`` (users played by the chat model: they click, grow bored
and say so in their own words) and an `LLMRecommender` (the model calls catalog tools, reads
the user's latest instruction and its own previous rationale, and picks the slate). Prints,
per step and user, the clicks, what the user said and the recommender's rationale, then the
fallback and token counts of both sides. Point it at a real endpoint with ``--base-url`` and
``--model`` (vLLM, Ollama, llama.cpp's server, OpenAI).

python examples/llm_dual_loop.py [--steps 8] [--users 4] [--users-env LLMUsers-v0]
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import gymnasium as gym
import numpy as np

from recoworld.agents.llm import LLMRecommender
from recoworld.testing.llm_server import FakeLLMServer


def _short(text: str, width: int = 90) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def main(
    steps: int = 8,
    users: int = 4,
    users_env: str = "LLMUsers-v0",
    base_url: str | None = None,
    model: str = "fake-persona",
    seed: int = 0,
) -> None:
    with contextlib.ExitStack() as stack:
        if base_url is None:  # the local rule-based server
            base_url = stack.enter_context(FakeLLMServer()).base_url
        env_kwargs: dict[str, Any] = {"n_items": 500, "num_candidates": 20, "slate_size": 4}
        if users_env == "LLMUsers-v0":
            env_kwargs.update(llm_base_url=base_url, llm_model=model)
        env = gym.make_vec(
            f"recoworld:recoworld/{users_env}",
            num_envs=users,
            vectorization_mode="vector_entry_point",
            **env_kwargs,
        )
        catalog = env.unwrapped.catalog  # type: ignore[attr-defined]
        rec = LLMRecommender(env.single_action_space, catalog, base_url=base_url, model=model)
        obs, info = env.reset(seed=seed)
        user_fallbacks = clicks = said = 0
        print(f"{users_env} x LLMRecommender, {users} users, {steps} steps ({base_url})")
        for t in range(steps):
            out = rec.recommend(obs, info)
            obs, _, _, _, info = env.step(out.action)
            step_clicks = np.asarray(info["clicks"]).sum(1)
            clicks += int(step_clicks.sum())
            user_fallbacks += int(np.asarray(info.get("llm_fallback", np.zeros(users))).sum())
            print(f"step {t}: clicks {step_clicks.tolist()}")
            for u in range(users):
                flags = " [fallback]" if out.extras["llm_fallback"][u] else ""
                flags += " [repaired]" if out.extras["repaired"][u] else ""
                print(f"  rec -> user {u}{flags}: {_short(str(out.extras['rationale'][u]))}")
                text = str(info["instruction"][u])
                if text:
                    said += 1
                    print(f'  user {u} says: "{_short(text)}"')
        c = rec.counters
        print(
            f"\ntotals: {clicks} clicks, {said} instructions; recommender: {c['users_served']} "
            f"slates, {c['tool_calls']} tool calls, {c['llm_fallbacks']} fallbacks, "
            f"{c['repaired']} repaired, {c['prompt_tokens']} prompt + {c['completion_tokens']} "
            f"completion tokens; users: {user_fallbacks} fallback turns"
        )
        env.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="steps of the loop")
    ap.add_argument("--users", type=int, default=4, help="users stepped together")
    ap.add_argument(
        "--users-env",
        default="LLMUsers-v0",
        choices=["LLMUsers-v0", "Retention-v0"],
        help="LLM users, or parametric users for contrast",
    )
    ap.add_argument("--base-url", default=None, help="an endpoint instead of the local server")
    ap.add_argument("--model", default="fake-persona")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    main(args.steps, args.users, args.users_env, args.base_url, args.model, args.seed)
