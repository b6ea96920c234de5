"""Idempotency keys in a SQLite store: the claim, one `BEGIN IMMEDIATE` transaction on a
connection of the calling thread; the release of keys (in the writer thread); and the
statement that prunes them.

The `task_keys` table (`sqlite_schema`) holds one row per key: the task holding it (id,
callable's name, lane: the handle a later claim returns, even before the task's own row is
written) and when it was claimed. `settled_at` stays NULL while the task's row exists (the
claim reads it from that row) and is copied from the row by a trigger when the row is
pruned, so a key outlives its task's row by up to `key_ttl`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections.abc import Callable

from .keys import KeyHolder, held
from .sqlite_schema import LIVE, immediate

__all__ = ["PRUNE_KEYS", "Claimers", "claim", "release"]

# The key's row, and what the row of its task says (no row: NULL `written`, `live`).
_FIND = (
    "SELECT k.task_id, k.name, k.lane, k.claimed_at, t.id NOTNULL, "
    f"coalesce({LIVE}, 0), CASE WHEN t.id ISNULL THEN k.settled_at ELSE t.settled_at END "
    "FROM task_keys k LEFT JOIN tasks t ON t.id = k.task_id WHERE k.key = ?"
)
_TAKE = "INSERT OR REPLACE INTO task_keys VALUES (?, ?, ?, ?, ?, NULL)"
_RELEASE = "DELETE FROM task_keys WHERE key = ? AND task_id = ?"
# Keys whose task's row was pruned and which expired since: at most `?` per call.
PRUNE_KEYS = (
    "DELETE FROM task_keys WHERE key IN (SELECT key FROM task_keys WHERE settled_at < ? LIMIT ?)"
)


def claim(conn: sqlite3.Connection, key: str, holder: KeyHolder, ttl: float) -> KeyHolder | None:
    """Take `key` for `holder` (None), or return the task holding it, in one transaction
    that holds the file's write lock from the read to the write: two processes claiming
    one key at once are served one after the other."""
    with immediate(conn):
        now = time.time()
        found = conn.execute(_FIND, (key,)).fetchone()
        if found is not None and (current := _holder(found, now, ttl)) is not None:
            conn.execute("ROLLBACK")  # nothing was written
            return current
        conn.execute(_TAKE, (key, holder.task_id, holder.name, holder.lane, now))
    return None


def release(conn: sqlite3.Connection, released: list[tuple[str, str]]) -> None:
    """Delete these (key, task id) claims, each only if that task still holds the key, in
    one transaction."""
    with immediate(conn):
        conn.executemany(_RELEASE, released)


def _holder(row: tuple[object, ...], now: float, ttl: float) -> KeyHolder | None:
    # Read back, so checked: a row this package did not write is taken over, not obeyed.
    task_id, name, lane, claimed_at, written, live, settled_at = row
    if not (isinstance(task_id, str) and isinstance(name, str) and isinstance(lane, str)):
        return None
    if not isinstance(claimed_at, float | int) or not isinstance(settled_at, float | int | None):
        return None
    if not held(
        now, ttl, claimed_at=claimed_at, written=bool(written), live=bool(live),
        settled_at=settled_at,
    ):  # fmt: skip
        return None
    return KeyHolder(task_id, name, lane)


class Claimers:
    """The connections key claims run on: one per calling thread (the loop's, each sync
    endpoint's), since a claim is decided in `add_task`; a thread that ends takes its
    connection along. `busy_timeout` bounds a claim, this process's writer included."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], busy_timeout: float) -> None:
        self._connect, self.busy_timeout = connect, busy_timeout
        # Each thread's connection, with the generation of the file it was opened on.
        self._conns: weakref.WeakKeyDictionary[threading.Thread, tuple[int, sqlite3.Connection]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def claim(
        self,
        key: str,
        holder: KeyHolder,
        ttl: float,
        generation: int,
        committing: threading.Lock,
    ) -> KeyHolder | None:
        """`claim` on this thread's connection. A key found held is answered from a read,
        which takes no lock (a retry storm never waits on the writers). Otherwise once this
        process's writer is not committing (`committing`: waiting on it wakes at the
        commit's end, where SQLite's own lock backs off 1, 2, 5 ms and more), and another
        process's lock is waited for up to what is left of `busy_timeout`."""
        conn = self._connection(generation)
        try:
            found = conn.execute(_FIND, (key,)).fetchone()
            if found is not None and (current := _holder(found, time.time(), ttl)) is not None:
                return current
            started = time.monotonic()
            if not committing.acquire(timeout=self.busy_timeout):
                raise sqlite3.OperationalError("database is locked (by this process's writer)")
            try:
                waited = time.monotonic() - started
                if waited > 0.001:  # only what is left of the timeout for another process
                    left = max(1, round((self.busy_timeout - waited) * 1000))
                    conn.execute(f"PRAGMA busy_timeout = {left}")
                try:
                    return claim(conn, key, holder, ttl)
                finally:
                    if waited > 0.001:
                        conn.execute(f"PRAGMA busy_timeout = {round(self.busy_timeout * 1000)}")
            finally:
                committing.release()
        except sqlite3.Error:
            # One that met a broken file keeps failing after a repair (as readers do).
            with self._lock:
                if self._conns.get(threading.current_thread(), (0, None))[1] is conn:
                    del self._conns[threading.current_thread()]
            conn.close()
            raise

    def _connection(self, generation: int) -> sqlite3.Connection:
        thread = threading.current_thread()
        with self._lock:
            found = self._conns.get(thread)
        if found is not None and found[0] == generation:
            return found[1]
        if found is not None:  # opened before the file was replaced
            found[1].close()
        conn = self._connect()
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the writer's job, not a request's
        with self._lock:
            self._conns[thread] = (generation, conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns = [conn for _, conn in self._conns.values()]
            self._conns.clear()
        for conn in conns:
            conn.close()
