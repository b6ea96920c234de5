"""The SQL of `SqliteStore`: schema version 5, the upgrades from 1 to 4, and its
statements. The columns of the `tasks` table are the fields of a row (`stores.rows`)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from functools import cache

from .rows import CLAIM, COLUMNS, INFO

SCHEMA_VERSION = 5
MAX_BATCH = 10_000  # operations per transaction: bounds one commit's size and duration
LIVE = "state IN ('pending', 'running', 'scheduled') AND handed_off = 0"  # the index's WHERE
INFO_COLUMNS = ", ".join(INFO)
# A live task has no result yet: what reads only live rows does not load the column.
LIVE_INFO = ", ".join("NULL" if column == "result" else column for column in INFO)
# Rows per upsert statement: one statement writes many rows (one step, instead of one
# per row), and 32 rows of 23 values stay under SQLite's oldest bound of 999 variables.
UPSERT_ROWS = 32


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: `BEGIN IMMEDIATE` takes the file's write lock first, so
    what is read in it is still true when it writes (two processes never both see a
    row free and both take it); `COMMIT` at the end, unless the block ended it with a
    `ROLLBACK` (nothing to write); rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        if conn.in_transaction:
            conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        raise


@cache
def upsert(rows: int) -> str:
    """The statement that writes `rows` rows (their values, then the writer's owner id).
    One text per count up to `UPSERT_ROWS`: each is prepared once (the connection's
    statement cache holds 128)."""
    values = ", ".join([f"({', '.join('?' * len(COLUMNS))})"] * rows)
    return (
        f"INSERT INTO tasks ({', '.join(COLUMNS)}) VALUES {values} ON CONFLICT(id) DO UPDATE "
        f"SET {', '.join(f'{c} = excluded.{c}' for c in COLUMNS[1:])}, "
        # A cancel request (not a row field) outlives the owner's puts until the task
        # settles: the owner may not have read it yet, and a new owner after a reclaim must.
        "cancel_requested = CASE WHEN excluded.owner ISNULL THEN NULL ELSE cancel_requested "
        # Bound to the lease holder: a row another process reclaimed, or one already
        # settled (finished, interrupted), is never changed by a process that stalled past
        # its lease.
        "END WHERE tasks.owner = ?"
    )


# Version 1 to 2: kept results, progress, and cancel requests. ADD COLUMN does not
# rewrite the table, and a process still on version 1 names its columns, so it keeps
# writing the upgraded file until it restarts (and is then refused: a newer schema).
UPGRADES = {
    1: (
        "ALTER TABLE tasks ADD COLUMN result TEXT",
        "ALTER TABLE tasks ADD COLUMN progress REAL",
        "ALTER TABLE tasks ADD COLUMN progress_message TEXT",
        "ALTER TABLE tasks ADD COLUMN cancel_requested REAL",
    ),
    # Version 2 to 3: who started the task (`options(owner=...)`; `owner` was taken: it
    # is the process that leases the row).
    2: ("ALTER TABLE tasks ADD COLUMN task_owner TEXT",),
    # Version 3 to 4: which process ran the task (`owner` is cleared when it settles), for
    # a dashboard of every worker process.
    3: ("ALTER TABLE tasks ADD COLUMN ran_by TEXT",),
    # Version 4 to 5: idempotency keys and delayed tasks. A scheduled task is live: the
    # partial index of live rows is made again with the new `LIVE` (SCHEMA recreates it).
    4: (
        "ALTER TABLE tasks ADD COLUMN task_key TEXT",
        "ALTER TABLE tasks ADD COLUMN due_at REAL",
        "DROP INDEX IF EXISTS tasks_live",
    ),
}
# `settled_at`: when the row stopped being live here (finished, or handed to a remote
# backend, which has no `finished_at`): the order in which finished rows are pruned.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    f"INSERT OR IGNORE INTO meta VALUES ('schema_version', {SCHEMA_VERSION}), ('rows', 0), "
    "('settled', 0)",
    "CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, name TEXT NOT NULL, lane TEXT "
    "NOT NULL, state TEXT NOT NULL, created_at REAL, started_at REAL, finished_at REAL, "
    "attempts INTEGER NOT NULL, error TEXT, owner TEXT, lease_until REAL, handed_off INTEGER "
    "NOT NULL, requeue INTEGER NOT NULL, payload BLOB, timeout REAL, retries INTEGER NOT NULL, "
    "retry_delay REAL NOT NULL, settled_at REAL, result TEXT, progress REAL, progress_message "
    "TEXT, cancel_requested REAL, task_owner TEXT, ran_by TEXT, task_key TEXT, due_at REAL)",
    # `options(key=...)`: which task holds each key (claimed in the request, in one
    # transaction, before its task's row is written: `stores.keys_sqlite`). `lane`: the
    # handle a later claim returns needs it before that row exists. `settled_at`: NULL
    # while the task's row exists (the claim reads that row), copied from it when the row
    # is pruned (by count, often within `key_ttl`), so the key outlives its row.
    "CREATE TABLE IF NOT EXISTS task_keys (key TEXT PRIMARY KEY, task_id TEXT NOT NULL, "
    "name TEXT NOT NULL, lane TEXT NOT NULL, claimed_at REAL NOT NULL, settled_at REAL)",
    "CREATE INDEX IF NOT EXISTS task_keys_settled ON task_keys (settled_at) "
    "WHERE settled_at NOTNULL",
    # Only settled rows are pruned (a live row is deleted only when its task was never
    # accepted, and its key is released then): a trigger on that rare delete costs the
    # writes of every task nothing.
    "CREATE TRIGGER IF NOT EXISTS tasks_key_kept AFTER DELETE ON tasks WHEN OLD.task_key "
    "NOTNULL AND OLD.settled_at NOTNULL BEGIN UPDATE task_keys SET settled_at = "
    "OLD.settled_at WHERE key = OLD.task_key AND task_id = OLD.id; END",
    # Periodic tasks: the last tick each one claimed (`stores.ticks`), and the task of the
    # last tick that ran (and that tick: a tick skipped as an overlap keeps them).
    "CREATE TABLE IF NOT EXISTS ticks (name TEXT PRIMARY KEY, tick REAL NOT NULL, "
    "task_id TEXT, task_tick REAL, claimed_at REAL NOT NULL)",
    # What each process published with its last renewal (`stores.peers`): one row a process,
    # deleted past `expires_at` by the next process that publishes.
    "CREATE TABLE IF NOT EXISTS processes (owner TEXT PRIMARY KEY, figures TEXT NOT NULL, "
    "expires_at REAL NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS tasks_live ON tasks (lease_until) WHERE {LIVE}",
    "CREATE INDEX IF NOT EXISTS tasks_settled ON tasks (settled_at) WHERE settled_at IS NOT NULL",
    # Only the rows with a pending request: the poll of `cancel_requests` reads a few.
    "CREATE INDEX IF NOT EXISTS tasks_cancel ON tasks (owner) WHERE cancel_requested NOTNULL",
    # Counts kept by triggers are exact across processes, and pruning by capacity then
    # reads one row instead of counting the table on every batch.
    "CREATE TRIGGER IF NOT EXISTS tasks_added AFTER INSERT ON tasks BEGIN UPDATE meta SET "
    "value = value + 1 WHERE key = 'rows' OR (key = 'settled' AND NEW.settled_at NOTNULL); END",
    "CREATE TRIGGER IF NOT EXISTS tasks_removed AFTER DELETE ON tasks BEGIN UPDATE meta SET "
    "value = value - 1 WHERE key = 'rows' OR (key = 'settled' AND OLD.settled_at NOTNULL); END",
    "CREATE TRIGGER IF NOT EXISTS tasks_settled_changed AFTER UPDATE OF settled_at ON tasks "
    "WHEN (OLD.settled_at ISNULL) != (NEW.settled_at ISNULL) BEGIN UPDATE meta SET value = "
    "value + CASE WHEN NEW.settled_at ISNULL THEN -1 ELSE 1 END WHERE key = 'settled'; END",
    # After the upgrades (or on a new file): the file is at this version now.
    f"UPDATE meta SET value = {SCHEMA_VERSION} WHERE key = 'schema_version'",
)
# One statement: the oldest settled rows beyond `capacity` (once more than `slack` over;
# the count kept by the triggers), and those older than `cutoff`, at most `most` of each.
_OLDEST = "SELECT id FROM tasks WHERE settled_at NOTNULL {} ORDER BY settled_at LIMIT {}"
_EXCESS = (
    "(SELECT CASE WHEN value - :capacity > :slack THEN min(value - :capacity, :most) ELSE 0 "
    "END FROM meta WHERE key = 'settled')"
)
PRUNE = (
    f"DELETE FROM tasks WHERE id IN (SELECT id FROM ({_OLDEST.format('', _EXCESS)}) UNION "
    f"SELECT id FROM ({_OLDEST.format('AND settled_at < :cutoff', ':most')}))"
)
RENEW = f"UPDATE tasks SET lease_until = ? WHERE owner = ? AND {LIVE}"
_CLAIMABLE = f"SELECT {LIVE_INFO}, {', '.join(CLAIM)} FROM tasks WHERE {LIVE}"
ORPHANS = f"{_CLAIMABLE} AND lease_until < ? AND owner IS NOT ? LIMIT 500"
# The other owners whose leases still run: each is checked for a process gone from this
# host (`stores.lease_owner`). A few processes, bounded all the same.
LEASING = (
    f"SELECT DISTINCT owner FROM tasks WHERE {LIVE} AND lease_until >= ? AND owner IS NOT ? "
    "AND length(owner) <= ? LIMIT 100"
)


def orphans_of(owners: int) -> str:
    """The live rows of `owners` owners (their process is gone), whatever their lease."""
    return f"{_CLAIMABLE} AND owner IN ({', '.join('?' * owners)}) LIMIT 500"


# Rows with a saved call (requeue-able, or scheduled) this owner claimed but never took up
# (the reclaim's caller failed after the commit), or left to the store at a shutdown
# (`core.schedule.put_off`) before it opened the store again: returned by the next
# reclaim instead of renewed forever.
STRAYS = f"{_CLAIMABLE} AND owner = ? AND payload NOTNULL AND (requeue = 1 OR state = 'scheduled')"
INTERRUPT = (
    "UPDATE tasks SET state = 'interrupted', finished_at = ?, settled_at = ?, owner = NULL, "
    "lease_until = NULL, payload = NULL, cancel_requested = NULL, error = ? WHERE id = ?"
)
CANCEL = f"UPDATE tasks SET cancel_requested = ? WHERE id = ? AND {LIVE}"
# `owner = ?` only matches live rows: a settled one has no owner (and no request).
CANCELS = "SELECT id FROM tasks WHERE cancel_requested NOTNULL AND owner = ?"
PUBLISH = "INSERT OR REPLACE INTO processes VALUES (?, ?, ?)"
UNPUBLISH = "DELETE FROM processes WHERE owner = ?"
FORGET_PROCESSES = "DELETE FROM processes WHERE expires_at < ?"
# Figures longer than a reader accepts are not even loaded.
PROCESSES = (
    "SELECT owner, figures FROM processes WHERE expires_at >= ? AND length(figures) <= ? "
    "ORDER BY owner LIMIT ?"
)
# The dashboard's rows: texts cut by SQLite, so a large result is never read whole.
_RECENT = (
    "SELECT id, name, state, lane, created_at, started_at, finished_at, attempts, "
    "substr(error, 1, :text), substr(result, 1, :result), progress, "
    "substr(progress_message, 1, :result), ran_by, handed_off FROM tasks "
)
RECENT_SETTLED = f"{_RECENT} WHERE settled_at NOTNULL ORDER BY settled_at DESC LIMIT :limit"
RECENT_LIVE = f"{_RECENT} WHERE {LIVE} LIMIT :limit"
