"""The catalog: frozen arrays describing items, a synthetic generator and a table loader."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from recoworld.errors import CatalogError, ConfigError

_TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "cooking": ("pasta", "curry", "bread", "noodles", "salad", "dumplings"),
    "travel": ("islands", "road trips", "old towns", "night trains", "deserts", "hostels"),
    "football": ("derbies", "transfers", "goalkeepers", "tactics", "academies", "penalties"),
    "jazz": ("saxophone", "big bands", "standards", "bebop", "pianists", "live sets"),
    "gardening": ("tomatoes", "roses", "compost", "succulents", "pruning", "seedlings"),
    "science": ("black holes", "enzymes", "fossils", "quantum bits", "volcanoes", "vaccines"),
    "gaming": ("speedruns", "boss fights", "indie games", "retro consoles", "mods", "strategy"),
    "fitness": ("kettlebells", "running", "yoga", "stretching", "cycling", "core work"),
    "comedy": ("stand-up", "sketches", "pranks", "satire", "improv", "parodies"),
    "finance": ("index funds", "budgets", "mortgages", "crypto", "taxes", "pensions"),
    "history": ("empires", "castles", "revolutions", "explorers", "pharaohs", "wartime"),
    "fashion": ("sneakers", "vintage", "tailoring", "streetwear", "fabrics", "runways"),
    "pets": ("puppies", "cats", "parrots", "aquariums", "rescues", "training"),
    "cars": ("engines", "rallies", "electric cars", "restorations", "road tests", "drifting"),
    "movies": ("trailers", "directors", "sequels", "film scores", "horror", "classics"),
    "art": ("watercolour", "sculpture", "street art", "portraits", "museums", "sketching"),
    "tech": ("smartphones", "laptops", "open source", "robots", "chips", "gadgets"),
    "parenting": ("toddlers", "bedtime", "school runs", "teenagers", "crafts", "lunchboxes"),
    "music production": ("synths", "mixing", "drum loops", "vocals", "samplers", "mastering"),
    "outdoors": ("hiking", "camping", "climbing", "kayaking", "birdwatching", "foraging"),
    "books": ("thrillers", "poetry", "sci-fi novels", "memoirs", "book clubs", "classics"),
    "home": ("tiny flats", "furniture", "lighting", "cleaning", "renovations", "storage"),
    "dance": ("salsa", "ballet", "hip-hop", "tango", "choreography", "flash mobs"),
    "space": ("rockets", "mars", "telescopes", "astronauts", "satellites", "eclipses"),
}
_ADJECTIVES = (
    "quick",
    "surprising",
    "beginner",
    "deep-dive",
    "weekend",
    "classic",
    "bold",
    "cosy",
    "expert",
    "five-minute",
    "hidden",
    "ultimate",
)
_FORMATS = ("clip", "guide", "story", "review", "explainer", "vlog")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Catalog:
    """Frozen arrays describing ``n_items`` items (ids are row indices ``0 .. n_items - 1``).

    Attributes:
        embeddings: ``(n_items, dim)`` float32, unit norm.
        topic: ``(n_items,)`` int32 topic id in ``[0, n_topics)``.
        quality: ``(n_items,)`` float32 in [0, 1].
        popularity: ``(n_items,)`` float64, positive, sums to 1 (heavy-tailed in synthetic ones).
        creator: ``(n_items,)`` int32 creator (author) id.
        length: ``(n_items,)`` float32 duration in seconds, positive.
        title: ``(n_items,)`` str.
        text: ``(n_items,)`` str, a short description.
        topic_names: ``(n_topics,)`` str.
    """

    embeddings: np.ndarray
    topic: np.ndarray
    quality: np.ndarray
    popularity: np.ndarray
    creator: np.ndarray
    length: np.ndarray
    title: np.ndarray
    text: np.ndarray
    topic_names: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)
        for name in (
            "embeddings",
            "topic",
            "quality",
            "popularity",
            "creator",
            "length",
            "title",
            "text",
            "topic_names",
        ):
            object.__setattr__(self, name, _readonly(getattr(self, name)))

    # ----------------------------------------------------------------- sizes
    @property
    def n_items(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def n_topics(self) -> int:
        return int(self.topic_names.shape[0])

    @property
    def n_creators(self) -> int:
        return int(self.creator.max()) + 1

    @cached_property
    def median_length(self) -> float:
        """Median item length: the unit of watch time in rewards."""
        return float(np.median(self.length))

    @cached_property
    def topic_centroids(self) -> np.ndarray:
        """``(n_topics, dim)`` float32 unit mean embedding per topic (zeros for empty topics)."""
        sums = np.zeros((self.n_topics, self.dim), dtype=np.float64)
        np.add.at(sums, self.topic, self.embeddings)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return _readonly((sums / np.maximum(norms, 1e-12)).astype(np.float32))

    @cached_property
    def item_features(self) -> np.ndarray:
        """``(n_items, dim + 3)`` float32: [embedding, quality, log-popularity, length], each
        extra column scaled to [0, 1] (log-popularity and length min-max over the catalog)."""
        logp = np.log(self.popularity)
        span = max(float(logp.max() - logp.min()), 1e-12)
        lp = (logp - logp.min()) / span
        ln = self.length / max(float(self.length.max()), 1e-12)
        cols = [self.embeddings, self.quality[:, None], lp[:, None], ln[:, None]]
        return _readonly(np.concatenate(cols, axis=1).astype(np.float32))

    # ----------------------------------------------------------- constructors
    @classmethod
    def synthetic(
        cls,
        n_items: int = 2000,
        *,
        n_topics: int = 20,
        dim: int = 32,
        n_creators: int = 200,
        seed: int = 0,
        topic_spread: float = 0.6,
        popularity_sigma: float = 1.5,
        quality_popularity_corr: float = 0.6,
    ) -> Catalog:
        """Draw a topic-clustered catalog with readable titles.

        Embeddings are unit vectors scattered around random topic centres (``topic_spread`` is
        the noise norm relative to the centre); topic sizes follow a mild power law; quality is
        ``Beta(2, 2)``; log-popularity is normal with standard deviation ``popularity_sigma`` and
        correlation ``quality_popularity_corr`` with quality's normal score, so popularity is
        heavy-tailed and correlated with quality, as in real catalogs. Each creator publishes in
        one main topic. Item ids are shuffled so they carry no information.

        Args:
            n_items: number of items (> 0).
            n_topics: number of topics (1 .. n_items).
            dim: embedding dimension (>= 2).
            n_creators: number of creators (1 .. n_items).
            seed: seed of the `numpy.random.Generator` that draws everything.
            topic_spread: within-topic noise scale (>= 0).
            popularity_sigma: spread of log-popularity (>= 0).
            quality_popularity_corr: correlation in [-1, 1].

        Returns:
            A new `Catalog`.
        """
        _check_int("n_items", n_items, 1)
        _check_int("n_topics", n_topics, 1, n_items, "n_items")
        _check_int("dim", dim, 2)
        _check_int("n_creators", n_creators, 1, n_items, "n_items")
        if topic_spread < 0 or popularity_sigma < 0:
            raise ConfigError(
                f"topic_spread={topic_spread} and popularity_sigma={popularity_sigma} must be >= 0"
            )
        if not -1.0 <= quality_popularity_corr <= 1.0:
            raise ConfigError(
                f"quality_popularity_corr={quality_popularity_corr} must lie in [-1, 1]"
            )
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((n_topics, dim))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        topic_w = 1.0 / np.arange(1, n_topics + 1) ** 0.5
        topic = rng.choice(n_topics, size=n_items, p=topic_w / topic_w.sum())
        topic[:n_topics] = np.arange(n_topics)  # every topic has at least one item
        rng.shuffle(topic)
        noise = rng.standard_normal((n_items, dim)) * (topic_spread / np.sqrt(dim))
        emb = centres[topic] + noise
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        quality = rng.beta(2.0, 2.0, n_items)
        z_q = (quality - 0.5) / np.sqrt(1.0 / 20.0)  # Beta(2, 2) has variance 1/20
        r = quality_popularity_corr
        logpop = popularity_sigma * (r * z_q + np.sqrt(1.0 - r * r) * rng.standard_normal(n_items))
        pop = np.exp(logpop - logpop.max())
        creator_topic = rng.integers(0, n_topics, n_creators)
        creator = np.empty(n_items, dtype=np.int64)
        for t in range(n_topics):  # loop over topics (tens), not items
            in_t = np.flatnonzero(topic == t)
            own = np.flatnonzero(creator_topic == t)
            pool = own if own.size else np.arange(n_creators)
            creator[in_t] = rng.choice(pool, size=in_t.size)
        length = np.exp(rng.normal(np.log(60.0), 0.6, n_items))
        names = _topic_names(n_topics)
        title, text = _titles(rng, topic, names)
        return cls(
            embeddings=emb.astype(np.float32),
            topic=topic.astype(np.int32),
            quality=quality.astype(np.float32),
            popularity=pop / pop.sum(),
            creator=creator.astype(np.int32),
            length=length.astype(np.float32),
            title=title,
            text=text,
            topic_names=np.asarray(names, dtype=object),
            meta={"source": "synthetic", "seed": seed},
        )

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, Any] | Any,
        *,
        embeddings: np.ndarray | None = None,
        topic_names: list[str] | None = None,
    ) -> Catalog:
        """Build a catalog from a table (a pandas DataFrame or a mapping of column arrays).

        Required: a ``topic`` column (int ids ``0 .. n_topics - 1``) and embeddings, either the
        ``embeddings`` argument ``(n_items, dim)`` or an ``embedding`` column of equal-length
        sequences. Optional columns with defaults: ``quality`` (0.5), ``popularity`` (uniform;
        normalised to sum 1), ``creator`` (0), ``length`` (1.0), ``title`` and ``text``
        ("item <row>"). Embeddings are normalised to unit norm.

        Raises:
            CatalogError: naming the missing column, or the column and row of a NaN, a
                non-positive popularity or length, or a zero embedding.
        """
        cols = {str(k): table[k] for k in table.keys()}
        if "topic" not in cols:
            raise CatalogError(
                f"catalog table has no 'topic' column (columns: {sorted(cols)}); add integer "
                "topic ids 0 .. n_topics - 1"
            )
        n = len(np.asarray(cols["topic"]))
        if embeddings is None:
            if "embedding" not in cols:
                raise CatalogError(
                    "catalog table has no 'embedding' column and no embeddings= argument; pass an "
                    "(n_items, dim) array or a column of equal-length vectors"
                )
            embeddings = np.stack([np.asarray(v, dtype=np.float64) for v in cols["embedding"]])
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise CatalogError(
                f"embeddings have shape {emb.shape}; expected ({n}, dim) to match the table's "
                f"{n} rows"
            )
        _no_nan("embedding", emb)
        norms = np.linalg.norm(emb, axis=1)
        if (bad := np.flatnonzero(norms < 1e-12)).size:
            raise CatalogError(
                f"embedding of row {int(bad[0])} is all zeros; give every item a non-zero embedding"
            )

        def col(name: str, default: Any, dtype: Any) -> np.ndarray:
            if name not in cols:
                return np.full(n, default, dtype=dtype)
            arr = np.asarray(cols[name])
            if arr.shape != (n,):
                raise CatalogError(f"column {name!r} has shape {arr.shape}; expected ({n},)")
            if dtype is not object:
                arr = arr.astype(np.float64)
                _no_nan(name, arr)
            return arr.astype(dtype)

        topic = col("topic", 0, np.int64)
        pop = col("popularity", 1.0, np.float64)
        length = col("length", 1.0, np.float64)
        for name, arr in (("popularity", pop), ("length", length)):
            if (bad := np.flatnonzero(arr <= 0)).size:
                raise CatalogError(
                    f"column {name!r} row {int(bad[0])} is {arr[bad[0]]}; it must be positive"
                )
        rows = np.arange(n)
        title = (
            col("title", "", object)
            if "title" in cols
            else np.array([f"item {i}" for i in rows], dtype=object)
        )
        text = col("text", "", object) if "text" in cols else title.copy()
        n_topics = int(topic.max()) + 1 if topic_names is None else len(topic_names)
        names = topic_names if topic_names is not None else [f"topic {t}" for t in range(n_topics)]
        return cls(
            embeddings=(emb / norms[:, None]).astype(np.float32),
            topic=topic.astype(np.int32),
            quality=col("quality", 0.5, np.float32),
            popularity=pop / pop.sum(),
            creator=col("creator", 0, np.int64).astype(np.int32),
            length=length.astype(np.float32),
            title=title,
            text=text,
            topic_names=np.asarray(names, dtype=object),
            meta={"source": "table"},
        )


def _check_int(
    name: str, value: int, low: int, high: int | None = None, high_name: str = ""
) -> None:
    if (
        not isinstance(value, (int, np.integer))
        or value < low
        or (high is not None and value > high)
    ):
        bound = f" and <= {high_name} ({high})" if high is not None else ""
        raise ConfigError(f"{name}={value!r} is invalid; it must be an integer >= {low}{bound}")


def _no_nan(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise CatalogError(
            f"column {name!r} has a NaN or infinite value at row {row}; fill or drop that row"
        )


def _validate(c: Catalog) -> None:
    n = c.embeddings.shape[0]
    if c.embeddings.ndim != 2 or n == 0:
        raise CatalogError(
            f"embeddings must be a non-empty (n_items, dim) array, got shape {c.embeddings.shape}"
        )
    for name in ("topic", "quality", "popularity", "creator", "length", "title", "text"):
        if getattr(c, name).shape != (n,):
            raise CatalogError(f"{name} has shape {getattr(c, name).shape}; expected ({n},)")
    if c.topic.min() < 0 or c.topic.max() >= len(c.topic_names):
        raise CatalogError(
            f"topic ids span [{c.topic.min()}, {c.topic.max()}] but there are "
            f"{len(c.topic_names)} topic names; ids must be 0 .. n_topics - 1"
        )
    if (c.quality.min() < 0) or (c.quality.max() > 1):
        raise CatalogError("quality must lie in [0, 1]; rescale the column")


def _topic_names(n_topics: int) -> list[str]:
    base = list(_TOPIC_WORDS)
    return [
        base[t] if t < len(base) else f"{base[t % len(base)]} {t // len(base) + 1}"
        for t in range(n_topics)
    ]


def _titles(
    rng: np.random.Generator, topic: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    vocab = list(_TOPIC_WORDS.values())
    n = topic.size
    adj = rng.integers(0, len(_ADJECTIVES), n)
    fmt = rng.integers(0, len(_FORMATS), n)
    w1 = rng.integers(0, 6, n)
    w2 = (w1 + rng.integers(1, 6, n)) % 6
    titles = np.empty(n, dtype=object)
    texts = np.empty(n, dtype=object)
    for i in range(n):  # string formatting happens once, at catalog creation
        words = vocab[topic[i] % len(vocab)]
        name = names[topic[i]]
        a, f = _ADJECTIVES[adj[i]], _FORMATS[fmt[i]]
        titles[i] = f"{a.capitalize()} {words[w1[i]]} {f} #{i}"
        texts[i] = f"A {a} {f} about {words[w1[i]]} and {words[w2[i]]} for {name} fans."
    return titles, texts
