"""Task ids: made here, for every lane and backend."""

from __future__ import annotations

import os
import threading
import time

__all__ = ["IdSource"]

_forks = 0  # forks this process descends from: a child must not reuse its parent's bytes


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class IdSource:
    """Task ids: 32 hex digits, like `uuid4().hex`: the time in milliseconds (12 digits),
    then 80 random bits (20 digits), as in a UUIDv7. Unguessable still, and made in
    order: a durable store indexes its rows by id, and a new id then lands in the same
    index page as the ones before it instead of in a random one (random ids made a
    SQLite commit write ~7 index pages for 7 tasks, and cost it 25% more CPU).

    Random bytes are read from the OS in batches (one `os.urandom` per id costs a
    system call, ~8 us); a forked child reads a fresh batch so no id repeats (told by
    a fork hook, not by comparing `os.getpid()`, a system call, on every id).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0
        self._forks = -1  # the `_forks` its buffer was read in: none yet

    def __call__(self) -> str:
        with self._lock:
            if self._offset >= len(self._buffer) or self._forks != _forks:
                self._buffer, self._offset, self._forks = os.urandom(_RANDOM * 256), 0, _forks
            start = self._offset
            self._offset += _RANDOM
        return f"{time.time_ns() // 1_000_000:012x}{self._buffer[start : start + _RANDOM].hex()}"


_RANDOM = 10  # random bytes per id: 80 bits
