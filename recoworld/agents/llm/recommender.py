"""`LLMRecommender`: an agentic recommender that calls catalog tools through an LLM.

Each step, for every user of the batch, it reads the user's latest instruction and its own
previous rationale, lets the model call the catalog tools (`recoworld.agents.llm.tools`), and
takes the model's slate and rationale. All users of a batch go out together in one
``LLMClient.chat_many`` (concurrent requests). The model's picks are checked against the
user's candidates: ids that are not candidates, repeats and missing picks are repaired from a
fallback ranking (``repaired``); a request that fails (after the client's retries and its one
repair retry) gets the fallback slate outright (``llm_fallback``). Nothing is invented
silently: both flags are in ``extras`` per user and counted in `LLMRecommender.counters`.

Registered as ``"llm"`` (`make_recommender("llm", env)`), configured from the environment
variables ``RECOWORLD_LLM_BASE_URL`` / ``RECOWORLD_LLM_MODEL`` (see `recoworld.llm.LLMConfig`).
The ``openai`` client (extra ``llm``) is imported only when a recommender is built.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from recoworld.agents.base import _format, _slate_size, env_action_space, register_recommender
from recoworld.agents.llm.prompts import (
    REPLY_SCHEMA,
    SCHEMA_NAME,
    SYSTEM_PROMPT,
    TOOL_DEFS,
    RecommenderReply,
    parse_reply,
    request_data,
    user_message,
)
from recoworld.agents.llm.tools import KIND_NAMES, CatalogTools, TextEncoder, UserHistory
from recoworld.catalog import Catalog
from recoworld.errors import ConfigError, RecoworldError
from recoworld.types import N_INSTRUCTION_KINDS, InstructionKind, Recommendation

TOOL_NAMES: tuple[str, ...] = tuple(TOOL_DEFS)
INSTRUCTION_WINDOW = 10  # without an obs["instruction"], a said instruction counts this long
RECENT_PENALTY = 1e3  # fallback ranking: items shown recently go behind all others


def repair_slate(
    ids: Sequence[int], candidates: np.ndarray, fallback: np.ndarray, slate_size: int
) -> tuple[np.ndarray, int]:
    """Turn the model's item ids into a valid slate of candidate indices.

    Ids that are not candidates, repeats, and ids beyond ``slate_size`` are dropped; missing
    slots are filled from ``fallback`` (candidate indices, best first), skipping items already
    on the slate.

    Args:
        ids: item ids the model returned, best first.
        candidates: ``(K,)`` the user's candidate item ids.
        fallback: ``(K,)`` candidate indices in fallback order.
        slate_size: L.

    Returns:
        ``(indices (L,) int64 into candidates, problems)``: ``problems`` counts dropped ids
        plus filled slots (0 when the model's slate was valid as given).
    """
    first: dict[int, int] = {}
    for i, c in enumerate(candidates.tolist()):
        first.setdefault(int(c), i)
    chosen: list[int] = []
    items: set[int] = set()
    problems = 0
    for x in ids:
        pos = first.get(int(x))
        if pos is None or int(x) in items or len(chosen) == slate_size:
            problems += 1
            continue
        chosen.append(pos)
        items.add(int(x))
    missing = slate_size - len(chosen)
    problems += missing
    if missing:
        taken = set(chosen)
        pool = [int(i) for i in fallback if int(i) not in taken]
        fresh = [i for i in pool if int(candidates[i]) not in items]
        chosen += (fresh + [i for i in pool if i not in fresh])[:missing]
    return np.asarray(chosen, np.int64), problems


def _compact(result: Any) -> Any:
    """A tool result for the log: item cards become their ids (rationale logs stay small)."""
    if isinstance(result, list):
        if all(isinstance(x, dict) and "id" in x for x in result):
            return [x["id"] for x in result]
        return [_compact(x) for x in result]
    if isinstance(result, dict):
        return {k: _compact(v) for k, v in result.items()}
    return result


def _safe(fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """A tool that answers bad arguments with ``{"error": ...}`` (sent back to the model, which
    can correct itself) instead of raising inside the client."""

    def call(args: dict[str, Any]) -> Any:
        try:
            return fn(args if isinstance(args, dict) else {})
        except (RecoworldError, KeyError, TypeError, ValueError) as exc:
            text = f"missing argument {exc}" if isinstance(exc, KeyError) else str(exc)
            return {"error": text}

    return call


class LLMRecommender:
    """An LLM that calls catalog tools and picks each user's slate, with a short rationale.

    Args:
        action_space: the single env's ``Discrete``/``MultiDiscrete`` action space.
        catalog: the env's catalog (``env.unwrapped.catalog``).
        client: an `recoworld.llm.LLMClient` (or anything with ``chat_many`` and ``check``);
            None builds one from ``config`` / keyword arguments / environment variables.
        config: an `recoworld.llm.LLMConfig`; None: ``LLMConfig.from_env(**llm_kwargs)``.
        check_endpoint: call ``client.check()`` now, so an endpoint that is down fails before
            any run (`recoworld.errors.LLMError`).
        tools: which tools the model may call (names of ``TOOL_DEFS``).
        max_tool_rounds: tool-call rounds per request before the model must answer.
        history: clicked items remembered per user (``user_history``).
        text_encoder: optional sentence encoder for ``search_items`` (the ``embed`` extra:
            `recoworld.agents.llm.tools.minilm_encoder`).
        **llm_kwargs: `LLMConfig` fields (``base_url``, ``model``, ``cache_dir``, ...) used
            when neither ``client`` nor ``config`` is given.

    Attributes:
        counters: running totals: ``users_served``, ``llm_fallbacks``, ``repaired``,
            ``invalid_picks``, ``tool_calls``, ``prompt_tokens``, ``completion_tokens``.
        last_extras: the ``extras`` of the last `recommend` (see there).

    Propensities are 1.0 and ``deterministic`` is True: an LLM's slate probabilities are
    unknown (and at temperature 0 it is deterministic), so its logs are unusable for
    off-policy evaluation.
    """

    def __init__(
        self,
        action_space: spaces.Space[Any],
        catalog: Catalog,
        *,
        client: Any | None = None,
        config: Any | None = None,
        check_endpoint: bool = True,
        tools: Sequence[str] = TOOL_NAMES,
        max_tool_rounds: int = 3,
        history: int = 20,
        text_encoder: TextEncoder | None = None,
        **llm_kwargs: Any,
    ) -> None:
        self.slate_size = _slate_size(action_space)
        unknown = [t for t in tools if t not in TOOL_DEFS]
        if unknown:
            raise ConfigError(f"unknown tools {unknown}; choose from {list(TOOL_DEFS)}")
        if not isinstance(max_tool_rounds, int) or max_tool_rounds < 0:
            raise ConfigError(f"max_tool_rounds={max_tool_rounds!r} must be an integer >= 0")
        self.catalog = catalog
        self.tool_names = tuple(tools)
        self.max_tool_rounds = max_tool_rounds
        self.tools = CatalogTools(catalog, text_encoder)
        self.history = UserHistory(history)
        self.client = client if client is not None else _make_client(config, llm_kwargs)
        if check_endpoint:
            self.client.check()
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "users_served",
                "llm_fallbacks",
                "repaired",
                "invalid_picks",
                "tool_calls",
                "prompt_tokens",
                "completion_tokens",
            ),
            0,
        )
        self.last_extras: dict[str, np.ndarray] = {}
        self._log_pop = np.log(catalog.popularity)

    # ------------------------------------------------------------------ protocol
    def recommend(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> Recommendation:
        """Slates for a batch of n users.

        Returns:
            A `Recommendation`: ``action`` ``(n, L)`` (``(n,)`` when L = 1) candidate
            indices, ``propensity`` ones, ``deterministic`` True, and ``extras`` of ``(n,)``
            arrays: ``rationale`` (str), ``tool_calls`` (JSON text: name, arguments, result
            ids), ``llm_fallback`` (bool: the fallback slate, the call failed), ``repaired``
            (bool: invalid picks were replaced), ``invalid_picks`` (int), ``llm_error`` (str),
            ``prompt_tokens``, ``completion_tokens`` (int) and ``cached`` (bool).
        """
        cand = np.asarray(info["candidate_ids"], np.int64)
        if cand.ndim != 2:
            raise ConfigError(
                f"info['candidate_ids'] has shape {cand.shape}; expected (n, K): batch a "
                "single env's obs and info with recoworld.agents.batch_single"
            )
        n, k = cand.shape
        if k < self.slate_size:
            raise ConfigError(f"{k} candidates cannot fill a slate of {self.slate_size}")
        self.history.observe(info, n)
        instructions = self._instructions(obs, n)
        order = self._fallback_order(cand)
        requests = [self._request(r, cand[r], instructions[r]) for r in range(n)]
        results = self.client.chat_many(requests) if n else []
        idx = np.empty((n, self.slate_size), np.int64)
        ex: dict[str, np.ndarray] = {
            "rationale": np.full(n, "", object),
            "tool_calls": np.full(n, "[]", object),
            "llm_fallback": np.zeros(n, bool),
            "repaired": np.zeros(n, bool),
            "invalid_picks": np.zeros(n, np.int64),
            "llm_error": np.full(n, "", object),
            "prompt_tokens": np.zeros(n, np.int64),
            "completion_tokens": np.zeros(n, np.int64),
            "cached": np.zeros(n, bool),
        }
        for r, res in enumerate(results):
            calls = [
                {"name": c.name, "arguments": c.arguments, "result": _compact(c.result)}
                for c in getattr(res, "tool_calls", ())
            ]
            ex["tool_calls"][r] = json.dumps(calls, default=str)
            ex["prompt_tokens"][r] = int(getattr(res, "prompt_tokens", 0) or 0)
            ex["completion_tokens"][r] = int(getattr(res, "completion_tokens", 0) or 0)
            ex["cached"][r] = bool(getattr(res, "cached", False))
            self.counters["tool_calls"] += len(calls)
            if res.ok and isinstance(res.value, RecommenderReply):
                idx[r], bad = repair_slate(res.value.slate, cand[r], order[r], self.slate_size)
                ex["invalid_picks"][r] = bad
                ex["repaired"][r] = bad > 0
                ex["rationale"][r] = res.value.rationale
            else:
                idx[r] = order[r, : self.slate_size]
                ex["llm_fallback"][r] = True
                ex["llm_error"][r] = str(getattr(res, "error", "") or "no usable reply")
                ex["rationale"][r] = "fallback: the most popular candidates not shown recently"
        self.history.trace[:] = ex["rationale"]
        self.counters["users_served"] += n
        self.counters["llm_fallbacks"] += int(ex["llm_fallback"].sum())
        self.counters["repaired"] += int(ex["repaired"].sum())
        self.counters["invalid_picks"] += int(ex["invalid_picks"].sum())
        self.counters["prompt_tokens"] += int(ex["prompt_tokens"].sum())
        self.counters["completion_tokens"] += int(ex["completion_tokens"].sum())
        self.last_extras = ex
        return Recommendation(
            _format(idx, self.slate_size), np.ones((n, self.slate_size)), True, dict(ex)
        )

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the history and rationale of users ``mask`` (bool ``(n,)``; all when None)."""
        self.history.reset(mask)

    def select(self, keep: np.ndarray) -> None:
        """Keep only rows ``keep`` of the per-user history."""
        self.history.select(keep)

    def trace_info(self) -> dict[str, np.ndarray]:
        """The last step's reasoning as ``info``-like keys, to merge into an env's ``info``
        (envs do not see recommenders): ``rec_rationale``, ``rec_tool_calls``,
        ``llm_fallback``, ``repaired``, each ``(n,)``."""
        ex = self.last_extras
        if not ex:
            return {}
        return {
            "rec_rationale": ex["rationale"],
            "rec_tool_calls": ex["tool_calls"],
            "llm_fallback": ex["llm_fallback"],
            "repaired": ex["repaired"],
        }

    # ------------------------------------------------------------------ helpers
    def _fallback_order(self, cand: np.ndarray) -> np.ndarray:
        """``(n, K)`` candidate indices: most popular first, recently shown items last."""
        recent = (cand[:, :, None] == self.history.shown[:, None, :]).any(2)
        score = self._log_pop[cand] - RECENT_PENALTY * recent
        return np.argsort(-score, axis=1, kind="stable")

    def _instructions(self, obs: dict[str, np.ndarray], n: int) -> list[dict[str, Any]]:
        """Each user's latest instruction: the words remembered from ``info`` and, when the
        observation carries one, the structured active instruction decoded from it."""
        h, cat = self.history, self.catalog
        kind = np.where(
            (h.instruction_age >= 0) & (h.instruction_age < INSTRUCTION_WINDOW),
            h.instruction_kind,
            0,
        )
        topic = np.full(n, -1, np.int64)
        item = np.full(n, -1, np.int64)
        instr = obs.get("instruction") if isinstance(obs, dict) else None
        k0, d = N_INSTRUCTION_KINDS, cat.dim
        if instr is not None and np.shape(instr) == (n, k0 + 2 * d + 1):
            x = np.asarray(instr, np.float64)
            onehot = x[:, :k0]
            kind = np.where(onehot.any(1), onehot.argmax(1) + 1, 0)
            topical = np.isin(kind, (1, 2, 3))
            if topical.any():
                topic[topical] = (x[topical, k0 : k0 + d] @ cat.topic_centroids.T).argmax(1)
            like = kind == InstructionKind.MORE_LIKE_ITEM
            if like.any():
                item[like] = (x[like, k0 + d : k0 + 2 * d] @ cat.embeddings.T).argmax(1)
                topic[like] = cat.topic[item[like]]
        out = []
        for r in range(n):
            age = int(h.instruction_age[r])
            out.append(
                {
                    "text": str(h.instruction[r]),
                    "kind": KIND_NAMES.get(int(kind[r]), "none"),
                    "topic": str(cat.topic_names[topic[r]]) if topic[r] >= 0 else None,
                    "item_id": int(item[r]) if item[r] >= 0 else None,
                    "steps_ago": age if age >= 0 else None,
                }
            )
        return out

    def _request(self, r: int, cand: np.ndarray, instruction: dict[str, Any]) -> Any:
        from recoworld.llm import ChatRequest, JsonSchema, ToolSpec, data_block

        cards = [self.tools.card(int(i)) for i in cand]
        data = request_data(cards, instruction, str(self.history.trace[r]), self.slate_size)
        # The user_history tool's answer is not in the prompt; its digest is, so that the
        # response cache (keyed by the messages) never serves a reply made for another history.
        h = self.history
        data["history_digest"] = hashlib.sha256(
            h.clicked[r].tobytes() + h.shown[r].tobytes()
        ).hexdigest()[:16]
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_message(data_block(data))},
        ]
        fns = self._tool_fns(r, cand)
        specs = tuple(
            ToolSpec(name, TOOL_DEFS[name][0], TOOL_DEFS[name][1], _safe(fns[name]))
            for name in self.tool_names
        )
        return ChatRequest(
            messages=messages,
            schema=JsonSchema(SCHEMA_NAME, REPLY_SCHEMA),
            parse=parse_reply,
            tools=specs,
            max_tool_rounds=self.max_tool_rounds,
        )

    def _tool_fns(self, r: int, cand: np.ndarray) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """Row ``r``'s tools, bound to its candidates (the history is not touched while the
        batch's requests run: `recommend` waits for them)."""
        tools, among, history = self.tools, cand.copy(), self.history

        def user_history(a: dict[str, Any]) -> Any:
            return history.summary(r, tools, a.get("k", 5))

        return {
            "search_items": lambda a: tools.search_items(a["query"], a.get("k", 5), among),
            "similar_items": lambda a: tools.similar_items(a["item_id"], a.get("k", 5), among),
            "popular_in_topic": lambda a: tools.popular_in_topic(a["topic"], a.get("k", 5), among),
            "user_history": user_history,
        }


def _make_client(config: Any | None, llm_kwargs: dict[str, Any]) -> Any:
    """An `LLMClient` from a config, or from keyword arguments and environment variables."""
    from recoworld.llm import LLMClient, LLMConfig

    if config is None:
        config = LLMConfig.from_env(**{k: v for k, v in llm_kwargs.items() if v is not None})
    elif llm_kwargs:
        raise ConfigError(
            f"give either config or LLM keyword arguments, not both (got {sorted(llm_kwargs)})"
        )
    return LLMClient(config)


def _env_endpoint(env: Any) -> Any | None:
    """The LLM endpoint an env was configured with (``llm=``, ``llm_base_url=``,
    ``llm_model=`` of `EnvConfig`, e.g. for LLM users), as an `LLMConfig`; None when it has
    none, so the recommender reads the environment variables."""
    import dataclasses

    from recoworld.llm import LLMConfig

    cfg = getattr(getattr(env, "unwrapped", env), "config", None)
    llm = getattr(cfg, "llm", None)
    over = {
        k: v
        for k, v in (
            ("base_url", getattr(cfg, "llm_base_url", None)),
            ("model", getattr(cfg, "llm_model", None)),
        )
        if v is not None
    }
    if isinstance(llm, LLMConfig):
        llm = dataclasses.asdict(llm)
    if isinstance(llm, dict):
        return LLMConfig.from_env(**{**{k: v for k, v in llm.items() if v is not None}, **over})
    return LLMConfig.from_env(**over) if over else None


def _factory(env: Any, seed: int | None) -> LLMRecommender:
    """``make_recommender("llm", env)``: the env's LLM endpoint when it has one (LLM users:
    one endpoint for both sides, each with its own client), else the environment variables."""
    return LLMRecommender(env_action_space(env), env.unwrapped.catalog, config=_env_endpoint(env))


register_recommender("llm", _factory)
