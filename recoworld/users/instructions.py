"""Instructions: when a user speaks up, what it asks for, whether a slate follows it, the text.

All rules are batched over users. Text is rendered only for the users that emitted one.
"""

from __future__ import annotations

import numpy as np

from recoworld.catalog import Catalog
from recoworld.types import Instruction, InstructionKind

K = InstructionKind
MORE_OF_MIN_SHARE = 0.3  # "more of t" is followed when at least this share of the slate is t
LESS_OF_MAX_SHARE = 0.1  # "less of t" is followed when at most this share of the slate is t
NEW_MIN_SHARE = 0.3  # "something new" is followed when this share is from unfamiliar topics


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def ignored_instruction(
    kind: np.ndarray,
    topic: np.ndarray,
    item: np.ndarray,
    slate: np.ndarray,
    slate_topic: np.ndarray,
    valid: np.ndarray,
    familiar: np.ndarray,
) -> np.ndarray:
    """Whether each slate ignores its user's active instruction.

    Args:
        kind, topic, item: ``(n,)`` the active instruction (kind 0 = none).
        slate: ``(n, L)`` item ids; slate_topic: ``(n, L)`` their topics; valid: ``(n, L)``.
        familiar: ``(n, n_topics)`` bool topics the user has clicked before.

    Returns:
        ``(n,)`` bool, False for users without an active instruction.
    """
    if not kind.any():  # the common case: no active instruction
        return np.zeros(kind.shape, bool)
    m = np.maximum(valid.sum(1), 1)
    on_topic = (slate_topic == topic[:, None]) & valid
    share = on_topic.sum(1) / m
    unfamiliar = ~familiar[np.arange(kind.shape[0])[:, None], slate_topic] & valid
    like_it = (on_topic & (slate != item[:, None])).any(1)
    return np.select(
        [
            kind == K.MORE_OF_TOPIC,
            kind == K.LESS_OF_TOPIC,
            kind == K.SOMETHING_NEW,
            kind == K.MORE_LIKE_ITEM,
        ],
        [
            share < MORE_OF_MIN_SHARE,
            share > LESS_OF_MAX_SHARE,
            unfamiliar.sum(1) / m < NEW_MIN_SHARE,
            ~like_it,
        ],
        default=False,
    )


def choose_instruction(
    rows: np.ndarray,
    exposure: np.ndarray,
    propensity: np.ndarray,
    theta: np.ndarray,
    mean_affinity: np.ndarray,
    last_enjoyed: np.ndarray,
    bore_level: np.ndarray,
    low_affinity: np.ndarray,
    catalog: Catalog,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cause a user states, for the users ``rows`` that speak up this step.

    Over-exposure to one topic gives "less of it", or "something new" for a novelty seeker in
    an exploring session (propensity above 0.5); otherwise slates far from the user's interest
    give "more of <favourite topic>"; otherwise a recently enjoyed item gives "more like it";
    otherwise "more of <favourite topic>".

    Returns:
        ``(kind, topic, item)`` arrays of length ``len(rows)``.
    """
    x = exposure[rows]
    top = x.argmax(1).astype(np.int32)
    bored = x[np.arange(rows.size), top] >= bore_level[rows]
    favourite = (theta[rows] @ catalog.topic_centroids.T).argmax(1).astype(np.int32)
    enjoyed = last_enjoyed[rows]
    far = mean_affinity[rows] < low_affinity[rows]
    kind = np.select(
        [bored & (propensity[rows] > 0.5), bored, far, enjoyed >= 0],
        [K.SOMETHING_NEW, K.LESS_OF_TOPIC, K.MORE_OF_TOPIC, K.MORE_LIKE_ITEM],
        default=K.MORE_OF_TOPIC,
    ).astype(np.int8)
    topic = np.select(
        [kind == K.SOMETHING_NEW, kind == K.LESS_OF_TOPIC, kind == K.MORE_LIKE_ITEM],
        [top, top, catalog.topic[np.maximum(enjoyed, 0)]],
        default=favourite,
    ).astype(np.int32)
    item = np.where(kind == K.MORE_LIKE_ITEM, enjoyed, -1).astype(np.int32)
    return kind, topic, item


_TEMPLATES: dict[int, tuple[str, ...]] = {
    K.MORE_OF_TOPIC: (
        "More {topic} please.",
        "Can you show me more {topic}?",
        "I'm in the mood for {topic}.",
    ),
    K.LESS_OF_TOPIC: ("Less {topic}, please.", "Enough {topic} for now.", "I'm tired of {topic}."),
    K.SOMETHING_NEW: (
        "Something new, please: I've seen a lot of {topic}.",
        "Surprise me with something different from {topic}.",
        "Show me something I haven't seen before.",
    ),
    K.MORE_LIKE_ITEM: (
        'More like "{title}" please.',
        'I enjoyed "{title}": more like that.',
        'Anything similar to "{title}"?',
    ),
}


def render(kind: int, topic: int, item: int, catalog: Catalog, variant: int = 0) -> str:
    """The sentence for one structured instruction (empty for kind 0)."""
    if kind == K.NONE:
        return ""
    options = _TEMPLATES[int(kind)]
    name = str(catalog.topic_names[topic]) if topic >= 0 else ""
    title = str(catalog.title[item]) if item >= 0 else ""
    return options[variant % len(options)].format(topic=name, title=title)


def to_record(kind: int, topic: int, item: int, catalog: Catalog, variant: int = 0) -> Instruction:
    """A typed `Instruction` with its rendered text."""
    return Instruction(
        InstructionKind(int(kind)),
        int(topic),
        int(item),
        render(kind, topic, item, catalog, variant),
    )
