"""Counting finished jobs inside the benchmark app, for strategies that have no status API."""

from __future__ import annotations

import threading
import time
from typing import Any


class Tracker:
    """Jobs accepted and finished, and the span from the first accepted to the last finished.

    `reset()` starts a new batch (the client calls `POST /batch`). Completions arrive from
    threads (thread pools) as well as from the loop, hence the lock. Clocks are
    `time.time()`, so a worker process can report its own finish time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted = 0
        self.done = 0
        self.failed = 0
        self.first: float | None = None
        self.last: float | None = None

    def reset(self) -> None:
        with self._lock:
            self.accepted = self.done = self.failed = 0
            self.first = self.last = None

    def accept(self, count: int) -> None:
        with self._lock:
            if self.first is None:
                self.first = time.time()
            self.accepted += count

    def finish(self, ok: bool = True, at: float | None = None) -> None:
        with self._lock:
            if ok:
                self.done += 1
            else:
                self.failed += 1
            at = time.time() if at is None else at
            # Reports may arrive out of order (a status walk in submission order).
            self.last = at if self.last is None else max(self.last, at)

    def report(self, done: int, last: float | None) -> None:
        """Take the count and the last finish time from elsewhere (a remote worker)."""
        with self._lock:
            self.done, self.last = done, last

    def state(self) -> dict[str, Any]:
        with self._lock:
            idle = self.done + self.failed == self.accepted
            wall = None
            if idle and self.first is not None and self.last is not None:
                wall = self.last - self.first
            return {"done": self.done, "failed": self.failed, "wall": wall}
