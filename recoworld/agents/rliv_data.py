"""Training samples for `RLIVAgent`, built from an ordinary stream of requests (numpy only).

**SCRI-MDP.** In the sparse cross-request interaction MDP a transition belongs to one
user–author *pair* and is indexed by the pair's meetings, not by the user's requests: the pair
(u, a) *meets* at request t when one of a's items is shown to u; its state is the candidate row
the agent saw for that item (item features, the pair's history, the user's features); its
reward is what the meeting brought (click, follow, gift on that author's item).

**ASA (adjacent state approximation).** The true next state of a pair is its state at its next
meeting, but a log holds the pair's state only at requests where it is *observed*: where one of
the author's items is among the request's candidates. `PairMeetingTracker` takes as ``s'`` the
pair's candidate row at the **first later request of the same episode at which the author is
among the candidates** (the adjacent request where the pair is observed), whether or not the
item is shown there. Why this one:

- a pair's own state (clicks, follows, gifts, meetings) changes only at its meetings, so at
  any request between two meetings it equals the state the next meeting will see; only
  "requests since last met" and the user's context drift, and the first observation is the one
  where they have drifted least;
- it exists far more often than a next *meeting* (K candidates versus ``slate_size`` slots)
  and does not depend on whether the logging policy chose to show the pair again, so samples
  from any policy's log carry the same meaning (the target bootstraps on ``Q(s')``, the value of
  showing the pair at that next opportunity);
- a pair not observed again before the episode ends gets ``done = 1``: the horizon is the
  pair's lifetime in UserAuthor-v0, so its value beyond it is 0.

The "stream of requests" is either a live run of UserAuthor-v0 (`RLIVAgent.learn` and
`RLIVAgent.record`: each request's candidate rows as served, the slate shown and the user's
click / follow / gift) or an ordinary request log in the log schema (`recoworld.replay.schema`,
Parquet, with the optional per-slot ``followed`` / ``gifted`` columns), whose candidate rows
`recoworld.agents.rliv_logs.samples_from_log` rebuilds by replaying each logged user through
the env's own state updates; both feed the same trackers (`make_tracker`, `state_rows`), so the
same run gives the same samples either way. Recorded samples travel as ``.npz``
(`Transitions.save`); a log without ``followed`` / ``gifted`` (``recoworld simulate``'s) is not
a source.

`RequestTracker` builds the baseline's samples instead: the ordinary MDP over every request,
where the next state of a shown item is the first shown item of the user's next request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoworld.errors import ConfigError

N_SIGNALS = 3  # click, follow, gift


@dataclass(frozen=True, slots=True)
class Transitions:
    """A batch of ``m`` samples.

    Attributes:
        s: ``(m, F)`` float32 state rows (candidate row + user features).
        r: ``(m, 3)`` float32 immediate click, follow, gift.
        s2: ``(m, F)`` float32 next-state rows (zeros where ``done``).
        done: ``(m,)`` float32, 1 where nothing follows.
    """

    s: np.ndarray
    r: np.ndarray
    s2: np.ndarray
    done: np.ndarray

    def __len__(self) -> int:
        return int(self.done.shape[0])

    @staticmethod
    def concat(parts: list[Transitions], dim: int) -> Transitions:
        """One batch from several (an empty batch of width ``dim`` when there are none)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            z = np.zeros((0, dim), np.float32)
            return Transitions(z, np.zeros((0, N_SIGNALS), np.float32), z, np.zeros(0, np.float32))
        return Transitions(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("s", "r", "s2", "done"))
        )

    def save(self, path: str) -> None:
        """Write the samples to an ``.npz`` file (what `RLIVAgent.fit_offline` reads)."""
        np.savez_compressed(path, s=self.s, r=self.r, s2=self.s2, done=self.done)

    @staticmethod
    def load(path: str) -> Transitions:
        with np.load(path) as z:
            return Transitions(z["s"], z["r"], z["s2"], z["done"])


def state_rows(obs: dict[str, np.ndarray]) -> np.ndarray:
    """``(n, K, F)`` float32 state rows: each candidate row with the user's features appended
    (one user's ``(K, ...)`` observation gives ``n = 1``). What `RLIVAgent` scores and what
    every sample's ``s`` and ``s2`` hold."""
    cand = np.asarray(obs["candidates"], np.float32)
    user = np.asarray(obs["user"], np.float32)
    if cand.ndim == 2:  # one user
        cand, user = cand[None], user[None]
    n, k, _ = cand.shape
    return np.concatenate([cand, np.broadcast_to(user[:, None, :], (n, k, user.shape[1]))], 2)


def make_tracker(
    mode: str, n: int, n_authors: int, slate_size: int, dim: int
) -> PairMeetingTracker | RequestTracker:
    """The sample builder of `RLIVArgs.mode`: `RequestTracker` for ``"request"``, else
    `PairMeetingTracker` (``"rliv"`` and ``"myopic"``)."""
    if mode == "request":
        return RequestTracker(n, slate_size, dim)
    return PairMeetingTracker(n, n_authors, dim)


def first_occurrence(authors: np.ndarray) -> np.ndarray:
    """``(n, K)`` bool: True at the first candidate of each author in its row."""
    order = np.argsort(authors, axis=1, kind="stable")
    sa = np.take_along_axis(authors, order, 1)
    first = np.ones(sa.shape, bool)
    first[:, 1:] = sa[:, 1:] != sa[:, :-1]
    out = np.zeros(sa.shape, bool)
    np.put_along_axis(out, order, first, 1)
    return out


class PairMeetingTracker:
    """SCRI-MDP samples with ASA (module docstring), for ``n`` users stepped together.

    Keeps, per user and author, the pair's last meeting still waiting for its next state:
    ``(n, n_authors, F)`` floats (64 users x 200 authors x 103 features: 5 MB).

    Args:
        n: users (rows of every batched argument).
        n_authors: authors in the catalog.
        dim: F, the width of a state row.
    """

    def __init__(self, n: int, n_authors: int, dim: int) -> None:
        if n < 1 or n_authors < 1:
            raise ConfigError(f"n={n} users and n_authors={n_authors} must both be >= 1")
        self.dim = dim
        self.on = np.zeros((n, n_authors), bool)
        self.s = np.zeros((n, n_authors, dim), np.float32)
        self.r = np.zeros((n, n_authors, N_SIGNALS), np.float32)

    def step(
        self,
        x: np.ndarray,
        authors: np.ndarray,
        action: np.ndarray,
        signals: np.ndarray,
        valid: np.ndarray,
        done: np.ndarray,
    ) -> Transitions:
        """Take one request of every user; return the samples it completes.

        Args:
            x: ``(n, K, F)`` state rows of this request's candidates.
            authors: ``(n, K)`` their authors.
            action: ``(n, L)`` candidate indices shown.
            signals: ``(n, L, 3)`` click, follow, gift per shown slot.
            valid: ``(n, L)`` bool, the slot showed an item (not a repeat).
            done: ``(n,)`` bool, the user's episode ended with this request.

        Returns:
            Samples of the pairs observed again at this request (ASA), then of the pairs of
            finished users (``done = 1``).
        """
        rows = np.arange(x.shape[0])[:, None]
        parts: list[Transitions] = []
        # 1. pairs waiting for a next state and observed here: this row is their s'
        seen = first_occurrence(authors) & self.on[rows, authors]
        u, k = np.nonzero(seen)
        if u.size:
            a = authors[u, k]
            zeros = np.zeros(u.size, np.float32)
            parts.append(Transitions(self.s[u, a], self.r[u, a], x[u, k], zeros))
            self.on[u, a] = False
        # 2. this request's meetings start new samples (a pair shown twice meets once)
        u, j = np.nonzero(valid)
        k = action[u, j]
        a = authors[u, k]
        self.r[u, a] = 0.0
        np.add.at(self.r, (u, a), signals[u, j])
        self.s[u, a] = x[u, k]
        self.on[u, a] = True
        # 3. finished users: pairs not observed again end with the horizon
        if done.any():
            u, a = np.nonzero(self.on & done[:, None])
            z = np.zeros((u.size, self.dim), np.float32)
            parts.append(Transitions(self.s[u, a], self.r[u, a], z, np.ones(u.size, np.float32)))
            self.on[done] = False
        return Transitions.concat(parts, self.dim)


class RequestTracker:
    """Ordinary-MDP samples over every request (the per-request RL baseline): a shown item's
    next state is the first shown item of the same user's next request (SARSA on the slate's
    top slot); the last request of an episode ends with ``done = 1``.

    Args:
        n: users; slate_size: L; dim: F.
    """

    def __init__(self, n: int, slate_size: int, dim: int) -> None:
        self.dim = dim
        self.on = np.zeros(n, bool)
        self.s = np.zeros((n, slate_size, dim), np.float32)
        self.r = np.zeros((n, slate_size, N_SIGNALS), np.float32)
        self.valid = np.zeros((n, slate_size), bool)

    def step(
        self,
        x: np.ndarray,
        authors: np.ndarray,
        action: np.ndarray,
        signals: np.ndarray,
        valid: np.ndarray,
        done: np.ndarray,
    ) -> Transitions:
        """As `PairMeetingTracker.step` (``authors`` is unused)."""
        n = x.shape[0]
        rows = np.arange(n)
        parts: list[Transitions] = []
        if self.on.any():
            nxt = x[rows, action[:, 0]]  # (n, F)
            u, j = np.nonzero(self.valid & self.on[:, None])
            parts.append(
                Transitions(self.s[u, j], self.r[u, j], nxt[u], np.zeros(u.size, np.float32))
            )
        self.s = x[rows[:, None], action]
        self.r = signals.astype(np.float32)
        self.valid = valid.copy()
        self.on[:] = True
        if done.any():
            u, j = np.nonzero(self.valid & done[:, None])
            z = np.zeros((u.size, self.dim), np.float32)
            parts.append(Transitions(self.s[u, j], self.r[u, j], z, np.ones(u.size, np.float32)))
            self.on[done] = False
        return Transitions.concat(parts, self.dim)


class ReplayBuffer:
    """A ring buffer of `Transitions` (the newest ``capacity`` samples)."""

    def __init__(self, capacity: int, dim: int) -> None:
        if capacity < 1:
            raise ConfigError(f"buffer_size={capacity} must be >= 1")
        self.capacity = capacity
        self.s = np.zeros((capacity, dim), np.float32)
        self.s2 = np.zeros((capacity, dim), np.float32)
        self.r = np.zeros((capacity, N_SIGNALS), np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.pos = 0
        self.size = 0

    def add(self, t: Transitions) -> None:
        m = len(t)
        if m == 0:
            return
        if m > self.capacity:  # keep the newest
            t = Transitions(t.s[-self.capacity :], t.r[-self.capacity :],
                            t.s2[-self.capacity :], t.done[-self.capacity :])  # fmt: skip
            m = self.capacity
        idx = (self.pos + np.arange(m)) % self.capacity
        self.s[idx], self.r[idx], self.s2[idx], self.done[idx] = t.s, t.r, t.s2, t.done
        self.pos = int((self.pos + m) % self.capacity)
        self.size = min(self.size + m, self.capacity)

    def contents(self) -> Transitions:
        """The stored samples, oldest first."""
        start = self.pos if self.size == self.capacity else 0
        idx = (start + np.arange(self.size)) % self.capacity
        return Transitions(self.s[idx], self.r[idx], self.s2[idx], self.done[idx])

    def grown(self, capacity: int) -> ReplayBuffer:
        """A buffer of ``capacity`` (at least this one's) holding this one's samples."""
        out = ReplayBuffer(max(capacity, self.capacity), self.s.shape[1])
        out.add(self.contents())
        return out

    def sample(self, batch: int, gen: np.random.Generator) -> Transitions:
        idx = gen.integers(0, self.size, batch)
        return Transitions(self.s[idx], self.r[idx], self.s2[idx], self.done[idx])
