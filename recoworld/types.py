"""Small typed records shared by users, environments, recommenders and logs."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class InstructionKind(enum.IntEnum):
    """What a user asks for. ``NONE`` (0) means no active instruction."""

    NONE = 0
    MORE_OF_TOPIC = 1
    LESS_OF_TOPIC = 2
    SOMETHING_NEW = 3
    MORE_LIKE_ITEM = 4


N_INSTRUCTION_KINDS = 4  # kinds other than NONE; the observation one-hot has this many columns


@dataclass(frozen=True, slots=True)
class Instruction:
    """One user's instruction in structured form plus its rendered sentence.

    Attributes:
        kind: what is asked for.
        topic: topic id the instruction is about (-1 when none).
        item: item id for ``MORE_LIKE_ITEM`` (-1 otherwise).
        text: the sentence the user "says".
    """

    kind: InstructionKind
    topic: int = -1
    item: int = -1
    text: str = ""


@dataclass(frozen=True, slots=True)
class Feedback:
    """Batched feedback of n users to their slates (arrays, leading user dimension).

    Attributes:
        clicks: ``(n, slate_size)`` bool, True where the user clicked that slot.
        watch_fraction: ``(n, slate_size)`` float32, share of the item's length watched.
        watch_time: ``(n, slate_size)`` float32, watch fraction times item length.
        likes: ``(n, slate_size)`` bool.
        leave: ``(n,)`` bool, the user ends the session after this step.
        ignored: ``(n,)`` bool, the slate ignored the user's active instruction.
        instruction_kind: ``(n,)`` int8 `InstructionKind` emitted this step (0 = none).
        instruction_topic: ``(n,)`` int32 topic of the emitted instruction (-1 = none).
        instruction_item: ``(n,)`` int32 item of the emitted instruction (-1 = none).
        extras: model-specific arrays (e.g. follows and gifts), keyed by name.
    """

    clicks: np.ndarray
    watch_fraction: np.ndarray
    watch_time: np.ndarray
    likes: np.ndarray
    leave: np.ndarray
    ignored: np.ndarray
    instruction_kind: np.ndarray
    instruction_topic: np.ndarray
    instruction_item: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What a recommender returns for a batch of n users.

    Attributes:
        action: ``(n, slate_size)`` int indices into each user's candidates (or ``(n,)`` when
            ``slate_size == 1``, or ``(n, K)`` float scores for ``action_type="scores"``).
        propensity: ``(n, slate_size)`` probability of each shown item at its slot under this
            recommender; 1.0 for deterministic recommenders.
        deterministic: True when propensities are all 1 (unusable for off-policy evaluation).
        extras: rationales, tool calls and the like, logged by runners (not envs).
    """

    action: np.ndarray
    propensity: np.ndarray
    deterministic: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
