"""`LLMUser`: a persona driven by an OpenAI-compatible chat model, behind the `UserModel` protocol.

One turn per user and step: the prompt shows the persona, its memory and mindset and the slate
(inside a data block); the model answers click / like / watch fraction per slot, whether to
leave, the new mindset, a satisfaction in [0, 1] and, when disengaged, an instruction. All users
of a step go out together in one ``chat_many`` (concurrently, bounded by the client).

Unlike `ParametricUser`, ``respond`` is not pure: it makes the model call (respond and transition
are one call; ``transition`` only applies what the reply said). The numeric state a recommender
observes (history, topic mixes, exposure, the active instruction) is updated by the same rules as
for parametric users, and the return gap comes from the same retention rule
(`recoworld.users.sessions.end_sessions`), fed with the satisfaction the model reports, mapped to
the parametric scale by `satisfaction_scale`.

Failed turns (``ok=False`` after the client's retries and its one repair retry) take the fallback
decision: skip every slot, no instruction, satisfaction and mindset unchanged, and stay — except
that the `FALLBACK_LEAVE_AFTER`-th failed turn in a row ends the session (a session cannot go on
without the model, e.g. when the endpoint went down mid-run). They are flagged per user in
``Feedback.extras["llm_fallback"]`` (and so in the env's ``info`` and the ``simulate`` summary)
and logged (one warning per batch); a run never crashes on them.

Per-user text state (persona, memory, mindset) lives in this object, keyed by the user's stream
key (``UserState.key``): it follows the user through the core's ``take``/``put``, and sampling a
user (`sample_into`, i.e. every env reset and every ``simulate`` run) starts it afresh.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from collections import OrderedDict
from typing import Any

import numpy as np

from recoworld.catalog import Catalog
from recoworld.errors import ConfigError, LLMError, RecoworldError
from recoworld.types import Feedback
from recoworld.users import instructions as ins
from recoworld.users.llm.memory import PAST_SESSIONS, RECENT_TURNS, TurnRecord, UserMemory
from recoworld.users.llm.persona import PersonaSource, as_source, source_from_dict, topic_ids
from recoworld.users.llm.prompts import (
    SCHEMA_NAME,
    UserTurn,
    parse_turn,
    turn_messages,
    turn_payload,
    user_turn_schema,
)
from recoworld.users.parametric import ParametricUser
from recoworld.users.params import UserParams
from recoworld.users.presets import retention
from recoworld.users.state import UserState

log = logging.getLogger("recoworld.users.llm")

SAT_NEUTRAL = 0.5  # reported satisfaction that maps to S = 0
SAT_SCALE = 0.4  # S = SAT_SCALE * (s - SAT_NEUTRAL): [0, 1] -> [-0.2, 0.2], parametric S's range
TEXT_CHARS = 160  # item texts are cut to this length in the prompt
FALLBACK_LEAVE_AFTER = 3  # consecutive failed turns after which the fallback decision is to leave

INFO_EXTRAS: dict[str, Any] = {"llm_fallback": False}
"""Feedback extras the env copies into ``info`` (name -> value at reset)."""


def satisfaction_scale(reported: np.ndarray) -> np.ndarray:
    """The parametric satisfaction ``S`` of a reported satisfaction in [0, 1] (float32)."""
    return (SAT_SCALE * (np.asarray(reported, np.float64) - SAT_NEUTRAL)).astype(np.float32)


def resolve_config(
    base: Any = None, llm: Any = None, base_url: str | None = None, model: str | None = None
) -> Any:
    """The `LLMConfig` to use: ``llm`` (an `LLMConfig` or a dict of its fields), else ``base``,
    else the environment, with ``base_url`` / ``model`` overriding.

    Raises:
        LLMError: no endpoint configured; the message names the env vars and the keywords.
    """
    from recoworld.llm import LLMConfig

    over: dict[str, Any] = {
        k: v for k, v in (("base_url", base_url), ("model", model)) if v is not None
    }
    cfg = llm if llm is not None else base
    if isinstance(cfg, dict):
        cfg = LLMConfig.from_env(**{**cfg, **over})
    elif isinstance(cfg, LLMConfig):
        cfg = dataclasses.replace(cfg, **over)
        if cfg.base_url is None or cfg.model is None:  # the environment fills what is missing
            cfg = LLMConfig.from_env(
                **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
            )
    elif cfg is None:
        try:
            cfg = LLMConfig.from_env(**over)
        except LLMError as exc:
            raise LLMError(
                f"{exc} (for an env: gym.make('recoworld/LLMUsers-v0', llm_base_url=..., "
                "llm_model=...) or llm=LLMConfig(...))"
            ) from None
    else:
        raise ConfigError(f"llm={cfg!r} must be an LLMConfig, a dict of its fields, or None")
    return cfg


class LLMUser:
    """Users played by a chat model; one segment of a `recoworld.users.Population`.

    Args:
        personas: who the users are: None (template personas drawn per user), a list of
            `Persona`, a JSON/JSONL path, a `ParametricUser` (personas rendered from its sampled
            traits) or a persona source (`PersonaTemplates`, `PersonaList`, `ParametricPersonas`).
        params: the parametric parameters behind the numeric bookkeeping and the retention rule
            (return gap, churn); default: the retention preset's.
        config: the endpoint (`recoworld.llm.LLMConfig`); None: from arguments at `connect` or
            the environment variables.
        client: an `LLMClient` to use (shared clients are fine: memory is per `LLMUser`).
        name: label in tables and logs.
        recent: turns of the current session shown in the prompt.
        past: past-session summaries shown in the prompt.
        max_memories: per-user memories kept (persona, recent turns, session summaries, a few
            KB each); past it the least recently active user's memory is dropped, so a long
            training run with autoreset does not keep every finished user's memory. Keep it
            above the number of users stepped at once: a live user whose memory was dropped
            starts over with a fresh one.
    """

    is_llm_user = True  # how populations tell LLM segments apart without importing this module

    def __init__(
        self,
        personas: Any = None,
        *,
        params: UserParams | None = None,
        config: Any = None,
        client: Any = None,
        name: str = "llm",
        recent: int = RECENT_TURNS,
        past: int = PAST_SESSIONS,
        max_memories: int = 20_000,
    ) -> None:
        self.source: PersonaSource = as_source(personas)
        self.params = params if params is not None else retention().params
        if not isinstance(self.params, UserParams):
            raise ConfigError(f"params={params!r} must be a UserParams")
        for label, v in (("recent", recent), ("past", past)):
            if not isinstance(v, int) or v < 0:
                raise ConfigError(f"{label}={v!r} must be an int >= 0")
        if isinstance(max_memories, bool) or not isinstance(max_memories, int) or max_memories < 1:
            raise ConfigError(
                f"max_memories={max_memories!r} must be an int >= 1 (users whose memory is kept)"
            )
        self.max_memories = max_memories
        self.config = config
        self.client = client
        self.name = name
        self.recent, self.past = recent, past
        self.memory: OrderedDict[int, UserMemory] = OrderedDict()  # least recently active first
        self.fallbacks = 0
        self._rules = ParametricUser(self.params, name=name)  # numeric bookkeeping rules
        self.info_extras = dict(INFO_EXTRAS)

    def __repr__(self) -> str:
        endpoint = getattr(self.client, "config", self.config)
        where = f"{getattr(endpoint, 'model', None)!r} at {getattr(endpoint, 'base_url', None)!r}"
        return f"LLMUser(name={self.name!r}, endpoint={where})"

    def __deepcopy__(self, memo: dict[int, Any]) -> LLMUser:
        # the client (a connection pool and its event-loop thread) is shared, not copied
        twin = LLMUser(
            self.source,
            params=self.params,
            config=self.config,
            client=self.client,
            name=self.name,
            recent=self.recent,
            past=self.past,
            max_memories=self.max_memories,
        )
        twin.memory = copy.deepcopy(self.memory, memo)
        twin.fallbacks = self.fallbacks
        return twin

    # ----------------------------------------------------------------- endpoint
    def connect(
        self,
        llm: Any = None,
        base_url: str | None = None,
        model: str | None = None,
        check: bool = True,
    ) -> LLMUser:
        """A twin of this model bound to an endpoint, with its own empty memory.

        Keeps this model's client when no endpoint argument is given; otherwise builds one from
        ``llm`` / ``base_url`` / ``model`` / this model's config / the environment. With
        ``check``, asks the endpoint for its models first (`LLMClient.check`).

        Raises:
            LLMError: no endpoint configured, or it did not answer.
        """
        from recoworld.llm import LLMClient

        given = llm is not None or base_url is not None or model is not None
        if self.client is not None and not given:
            client, cfg = self.client, self.config
        else:
            cfg = resolve_config(self.config, llm, base_url, model)
            client = LLMClient(cfg)
        if check:
            client.check()
        return LLMUser(
            self.source,
            params=self.params,
            config=cfg,
            client=client,
            name=self.name,
            recent=self.recent,
            past=self.past,
            max_memories=self.max_memories,
        )

    def _client(self) -> Any:
        if self.client is None:  # used without connect(): the environment's endpoint
            self.client = self.connect().client
        return self.client

    @property
    def usage(self) -> Any:
        """The client's `TokenUsage` (None before any call)."""
        return None if self.client is None else self.client.usage

    # ------------------------------------------------------------------- sample
    def sample_into(self, state: UserState, rows: np.ndarray, catalog: Catalog) -> None:
        """Give users ``rows`` a persona (from their keys) and a fresh memory.

        The hidden numeric traits follow the persona: the interest vector is the normalised mean
        of its interest topics' centroids, the novelty trait its novelty appetite.
        """
        if rows.size == 0:
            return
        personas = self.source.assign(state, rows, catalog)
        for j, r in enumerate(rows):  # per user: personas are text
            p = personas[j]
            t = topic_ids(p.interests, catalog)
            centre = catalog.topic_centroids[t].sum(0)
            state.theta[r] = centre / max(float(np.linalg.norm(centre)), 1e-12)
            state.novelty[r] = float(np.clip(p.novelty_appetite, 0.02, 0.98))
            mem = UserMemory(p, self.recent, self.past)
            mem.session, mem.day = int(state.session[r]), int(state.day[r])
            self.memory[int(state.key[r])] = mem
            self.memory.move_to_end(int(state.key[r]))
        self._forget()
        state.theta0[rows] = state.theta[rows]

    def _forget(self) -> None:
        """Drop the least recently active users' memories past ``max_memories``."""
        while len(self.memory) > self.max_memories:
            self.memory.popitem(last=False)

    def _memory(self, state: UserState, r: int, catalog: Catalog) -> UserMemory:
        key = int(state.key[r])
        mem = self.memory.get(key)
        if mem is None:  # a user this model did not sample (e.g. a hand-built state)
            persona = self.source.assign(state, np.array([r]), catalog)[0]
            mem = self.memory[key] = UserMemory(persona, self.recent, self.past)
            mem.session, mem.day = int(state.session[r]), int(state.day[r])
            self._forget()
        else:
            self.memory.move_to_end(key)  # active now
        return mem

    # ------------------------------------------------------------------ respond
    def requests(self, state: UserState, slate: np.ndarray, catalog: Catalog) -> list[Any]:
        """One `ChatRequest` per user: the turn prompt for its slate ``(n, L)``."""
        from recoworld.llm import ChatRequest, JsonSchema

        schema = JsonSchema(SCHEMA_NAME, user_turn_schema())
        names = [str(t) for t in catalog.topic_names]
        out = []
        for r in range(state.n):
            mem = self._memory(state, r, catalog)
            mem.sync_session(int(state.session[r]), int(state.day[r]))
            row = slate[r]
            slots = [int(k) for k in np.flatnonzero(row >= 0)]
            shown = [
                {
                    "slot": k,
                    "item_id": int(row[k]),
                    "title": str(catalog.title[row[k]]),
                    "text": str(catalog.text[row[k]])[:TEXT_CHARS],
                    "topic": names[int(catalog.topic[row[k]])],
                }
                for k in slots
            ]
            remembered = state.history[r][state.history[r] >= 0]
            items = sorted({int(x) for x in row[row >= 0]} | {int(x) for x in remembered})
            payload = turn_payload(mem.view(), shown, int(state.step[r]), names)
            out.append(
                ChatRequest(
                    turn_messages(payload),
                    schema,
                    parse=functools.partial(
                        parse_turn, slots=slots, topic_names=names, item_ids=items
                    ),
                )
            )
        return out

    def feedback(
        self, state: UserState, slate: np.ndarray, catalog: Catalog, results: list[Any]
    ) -> Feedback:
        """`Feedback` from the model's replies (fallback decision where a reply failed)."""
        n, n_slots = slate.shape
        clicks = np.zeros((n, n_slots), bool)
        likes = np.zeros((n, n_slots), bool)
        watch = np.zeros((n, n_slots), np.float32)
        leave = np.zeros(n, bool)
        kind = np.zeros(n, np.int8)
        itopic = np.full(n, -1, np.int32)
        iitem = np.full(n, -1, np.int32)
        text = np.full(n, "", object)
        reported = np.full(n, np.nan, np.float32)
        fallback = np.zeros(n, bool)
        turns = np.full(n, None, object)
        errors: list[str] = []
        for r, res in enumerate(results):
            turn = res.value if res.ok else None
            mem = self.memory.get(int(state.key[r]))
            if not isinstance(turn, UserTurn):
                fallback[r] = True
                errors.append(res.error or "the reply was not a user turn")
                if mem is not None:
                    mem.failures += 1
                    leave[r] = mem.failures >= FALLBACK_LEAVE_AFTER
                continue
            if mem is not None:
                mem.failures = 0
            turns[r] = turn
            for d in turn.items:
                clicks[r, d.slot], likes[r, d.slot], watch[r, d.slot] = (
                    d.click,
                    d.like,
                    d.watch_fraction,
                )
            leave[r] = turn.leave
            reported[r] = turn.satisfaction
            ins_ = turn.instruction
            kind[r], itopic[r], iitem[r], text[r] = int(ins_.kind), ins_.topic, ins_.item, ins_.text
        if errors:
            log.warning(
                "%d of %d LLM user turns failed (first error: %s); fallback decision: skip all, "
                "stay (leave after %d failed turns in a row)",
                len(errors),
                n,
                errors[0],
                FALLBACK_LEAVE_AFTER,
            )
        self.fallbacks += int(fallback.sum())
        valid = slate >= 0
        ids = np.where(valid, slate, 0)
        ignored = ins.ignored_instruction(
            state.instr_kind,
            state.instr_topic,
            state.instr_item,
            ids,
            catalog.topic[ids],
            valid,
            state.familiar,
        )
        return Feedback(
            clicks=clicks,
            watch_fraction=watch,
            watch_time=(watch * catalog.length[ids]).astype(np.float32),
            likes=likes,
            leave=leave,
            ignored=ignored,
            instruction_kind=kind,
            instruction_topic=itopic,
            instruction_item=iitem,
            extras={
                "llm_fallback": fallback,
                "instruction_text": text,
                "llm_satisfaction": reported,
                "llm_turn": turns,
            },
        )

    def respond(
        self, state: UserState, slate: np.ndarray, catalog: Catalog, u: np.ndarray
    ) -> Feedback:
        """Ask the model for every user's turn at once (one ``chat_many``); ``u`` is unused
        (the model decides; the session-end draws use the same ``u`` in `end_sessions`)."""
        reqs = self.requests(state, slate, catalog)
        try:
            results = self._client().chat_many(reqs)
        except (RecoworldError, OSError) as exc:  # the client should not raise; never crash
            log.warning("LLM user turns failed for the whole batch: %s", exc)
            from recoworld.llm import ChatResult

            results = [ChatResult(None, False, f"{type(exc).__name__}: {exc}")] * len(reqs)
        return self.feedback(state, slate, catalog, results)

    # --------------------------------------------------------------- transition
    def transition(
        self, state: UserState, slate: np.ndarray, feedback: Feedback, catalog: Catalog
    ) -> None:
        """Apply a turn: numeric bookkeeping by the parametric rules, satisfaction as reported
        (unchanged after a fallback), and the turn into each user's memory."""
        before = state.satisfaction.copy()
        self._rules.transition(state, slate, feedback, catalog)
        fallback = feedback.extras["llm_fallback"]
        reported = feedback.extras["llm_satisfaction"]
        state.satisfaction[:] = np.where(
            fallback, before, satisfaction_scale(np.nan_to_num(reported))
        )
        turns = feedback.extras["llm_turn"]
        names = catalog.topic_names
        for r in range(state.n):
            mem = self.memory.get(int(state.key[r]))
            if mem is None:
                continue
            row = slate[r]
            valid = row >= 0
            clicked = valid & feedback.clicks[r]
            cids, sids = row[clicked], row[valid & ~feedback.clicks[r]]
            turn = turns[r]
            mem.record(
                TurnRecord(
                    step=int(state.step[r]) - 1,
                    clicked=tuple(str(catalog.title[i]) for i in cids),
                    liked=tuple(str(catalog.title[i]) for i in row[clicked & feedback.likes[r]]),
                    topics=tuple(str(names[catalog.topic[i]]) for i in cids),
                    skipped_topics=tuple(str(names[catalog.topic[i]]) for i in sids),
                    watch=float(feedback.watch_fraction[r][clicked].mean()) if cids.size else 0.0,
                    satisfaction=None if turn is None else turn.satisfaction,
                    instruction=str(feedback.extras["instruction_text"][r]),
                    fallback=bool(fallback[r]),
                ),
                None if turn is None else turn.mindset,
            )

    # -------------------------------------------------------------- diagnostics
    def item_utility(self, state: UserState, items: np.ndarray, catalog: Catalog) -> np.ndarray:
        """The parametric utility of items under the persona's interest vector: an
        approximation of what the persona likes (for `OracleRecommender`), not the model's
        own judgement."""
        return self._rules.item_utility(state, items, catalog)

    # --------------------------------------------------------------------- JSON
    def as_dict(self) -> dict[str, Any]:
        """JSON-able description (personas and parameters; never the endpoint's key)."""
        return {
            "kind": "llm",
            "name": self.name,
            "params": self.params.as_dict(),
            "personas": self.source.as_dict(),
            "recent": self.recent,
            "past": self.past,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LLMUser:
        return cls(
            source_from_dict(data["personas"]),
            params=UserParams(**data["params"]),
            name=data.get("name", "llm"),
            recent=int(data.get("recent", RECENT_TURNS)),
            past=int(data.get("past", PAST_SESSIONS)),
        )
