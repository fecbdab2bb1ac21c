"""The `UserModel` protocol: what the environment core needs from simulated users."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from recoworld.catalog import Catalog
from recoworld.types import Feedback
from recoworld.users.state import UserState


@runtime_checkable
class UserModel(Protocol):
    """Batched over n users; randomness comes in as uniforms from each user's own stream.

    ``respond`` is pure; ``transition`` updates the state in place (it returns nothing) so that
    large populations are not copied every step.
    """

    def respond(
        self, state: UserState, slate: np.ndarray, catalog: Catalog, u: np.ndarray
    ) -> Feedback:
        """Feedback to slates ``(n, L)`` (item ids, -1 = empty slot)."""
        ...

    def transition(
        self, state: UserState, slate: np.ndarray, feedback: Feedback, catalog: Catalog
    ) -> None:
        """Apply the consequences of ``feedback`` to ``state`` in place."""
        ...
