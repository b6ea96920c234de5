"""Task ids: made here, for every lane and backend."""

from __future__ import annotations

import os
import threading

__all__ = ["IdSource"]


class IdSource:
    """Task ids: 128 random bits as 32 hex digits, like `uuid4().hex`, unguessable.

    Random bytes are read from the OS in batches (one `os.urandom` per id costs a
    system call, ~8 us); a forked child reads a fresh batch so no id repeats.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0
        self._pid = 0

    def __call__(self) -> str:
        with self._lock:
            if self._offset >= len(self._buffer) or self._pid != os.getpid():
                self._buffer, self._offset, self._pid = os.urandom(16 * 256), 0, os.getpid()
            start = self._offset
            self._offset += 16
        return self._buffer[start : start + 16].hex()
