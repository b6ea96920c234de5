"""Idempotency keys in a SQLite store: the claim, one `BEGIN IMMEDIATE` transaction on a
connection of the calling thread, and the statements that release and prune keys.

The `task_keys` table (`sqlite_schema`) holds one row per key: the task holding it (id,
callable's name, lane: the handle a later claim returns, even before the task's own row is
written) and when it was claimed. `settled_at` stays NULL while the task's row exists (the
claim reads it from that row) and is copied from the row by a trigger when the row is
pruned, so a key outlives its task's row by up to `key_ttl`.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time

from .keys import KeyHolder, held
from .sqlite_schema import LIVE

__all__ = ["PRUNE_KEYS", "RELEASE_KEY", "claim"]

# The key's row, and what the row of its task says (no row: NULL `written`, `live`).
_FIND = (
    "SELECT k.task_id, k.name, k.lane, k.claimed_at, t.id NOTNULL, "
    f"coalesce({LIVE}, 0), CASE WHEN t.id ISNULL THEN k.settled_at ELSE t.settled_at END "
    "FROM task_keys k LEFT JOIN tasks t ON t.id = k.task_id WHERE k.key = ?"
)
_TAKE = "INSERT OR REPLACE INTO task_keys VALUES (?, ?, ?, ?, ?, NULL)"
RELEASE_KEY = "DELETE FROM task_keys WHERE key = ? AND task_id = ?"
# Keys whose task's row was pruned and which expired since: at most `?` per call.
PRUNE_KEYS = (
    "DELETE FROM task_keys WHERE key IN (SELECT key FROM task_keys WHERE settled_at < ? LIMIT ?)"
)


def claim(conn: sqlite3.Connection, key: str, holder: KeyHolder, ttl: float) -> KeyHolder | None:
    """Take `key` for `holder` (None), or return the task holding it, in one transaction
    that holds the file's write lock from the read to the write: two processes claiming
    one key at once are served one after the other."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        now = time.time()
        found = conn.execute(_FIND, (key,)).fetchone()
        if found is not None and (current := _holder(found, now, ttl)) is not None:
            conn.execute("ROLLBACK")  # nothing was written
            return current
        conn.execute(_TAKE, (key, holder.task_id, holder.name, holder.lane, now))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        raise
    return None


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
