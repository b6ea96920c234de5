"""Task ids: made here, for every lane and backend."""

from __future__ import annotations

import os
import threading

__all__ = ["IdSource"]

_forks = 0  # forks this process descends from: a child must not reuse its parent's bytes


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class IdSource:
    """Task ids: 128 random bits as 32 hex digits, like `uuid4().hex`, unguessable.

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
                self._buffer, self._offset, self._forks = os.urandom(16 * 256), 0, _forks
            start = self._offset
            self._offset += 16
        return self._buffer[start : start + 16].hex()
