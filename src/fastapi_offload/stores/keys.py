"""Idempotency keys (`options(key=...)`) as every store keeps them: who holds a key, when a
key is still held, and the memory store's map of keys.

A key is claimed in the request, before its task's row is written, and stays held while:

- its task is live (scheduled, pending or running here, not handed to a remote backend);
- or its task settled (finished, or handed off) less than `key_ttl` seconds ago; a
  durable store keeps the settle time with the key when it prunes the task's row, so a
  key outlives its row (rows are pruned by `status_capacity`, often within the `key_ttl`);
- or its task has no row yet and the claim is less than `CLAIM_GRACE` old: the claiming
  request has not written its task yet.

A key that is not held any more is taken over by the next claim, in the same atomic step.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CLAIM_GRACE", "KeyHolder", "MemoryKeys", "held"]

# How long a claim whose task has no row yet still holds its key. A durable store's row
# is written behind the request by its writer thread, milliseconds after `add_task`
# normally; a slow store fails the request within a few `store_timeout`s (which frees
# the key). The grace also covers a process stalled for seconds on a busy host and the
# clock skew between hosts (each host's clock stamps its claims). It is also how long a
# retry is told `existing` for a task whose process was killed between its `add_task`
# and the write of its row, so it is no longer than that.
CLAIM_GRACE = 30.0


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """The task holding a key (or claiming it): its id, its callable's name, its lane."""

    task_id: str
    name: str
    lane: str


def held(
    now: float,
    ttl: float,
    *,
    claimed_at: float,
    written: bool,
    live: bool,
    settled_at: float | None,
) -> bool:
    """Whether a key claimed at `claimed_at` is still held by its task: `written` (the
    task has a row), `live` (that row is), `settled_at` (from its row, or kept with the key
    once the row was pruned). The Redis claim script applies the same rule."""
    if live:
        return True
    if settled_at is not None:
        return now < settled_at + ttl
    return not written and now < claimed_at + CLAIM_GRACE


@dataclass(slots=True)
class _Claim:
    holder: KeyHolder
    claimed_at: float
    settled_at: float | None = None


class MemoryKeys:
    """The keys of a memory store: at most `capacity`, the oldest claim forgotten first
    (the store keeps as many finished statuses). Claims come from the loop and from sync
    endpoints' threads: every method takes a lock."""

    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity, self.ttl = capacity, ttl
        self._claims: OrderedDict[str, _Claim] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._claims)

    def claim(
        self, key: str, holder: KeyHolder, is_live: Callable[[str], bool]
    ) -> KeyHolder | None:
        """Take `key` for `holder` (None), or return the task that holds it.
        `is_live(task_id)`: the store holds that task live."""
        now = time.time()
        with self._lock:
            found = self._claims.get(key)
            if found is not None:
                live = is_live(found.holder.task_id)
                # Admitted tasks are put in the store at once: "no row" is a claim whose
                # admission is still under way (or was refused, and is being released).
                if held(
                    now, self.ttl, claimed_at=found.claimed_at, written=live,
                    live=live, settled_at=found.settled_at,
                ):  # fmt: skip
                    return found.holder
            self._claims[key] = _Claim(holder, now)
            self._claims.move_to_end(key)
            while len(self._claims) > self.capacity:
                self._claims.popitem(last=False)
        return None

    def settled(self, key: str, task_id: str, at: float) -> None:
        """Task `task_id` ended (or was handed off) at `at`: its key is held `ttl` more."""
        with self._lock:
            found = self._claims.get(key)
            if found is not None and found.holder.task_id == task_id:
                found.settled_at = at

    def release(self, key: str, task_id: str) -> None:
        """Free `key` if `task_id` holds it (its task was never accepted)."""
        with self._lock:
            found = self._claims.get(key)
            if found is not None and found.holder.task_id == task_id:
                del self._claims[key]
