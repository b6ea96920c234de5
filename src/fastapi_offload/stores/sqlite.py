"""`SqliteStore`: task statuses in one SQLite file, shared by the worker processes of an app.

Durability: the file is in WAL mode with `synchronous=NORMAL`, so a committed batch
survives the process being killed (SIGKILL, the OOM killer, a crash): the next connection
replays the WAL. It does not survive power loss or an OS crash, which may lose the last
commits before it (WAL commits are not fsynced; checkpoints are).

The file, and with it its `-wal` and `-shm` files (SQLite gives them the file's mode),
is created readable and writable by its owner only (0600), whatever the umask: the
statuses hold task errors and results.

`put` never waits on the disk: it snapshots the record into a row and queues it for one
writer thread (`stores.writer`), which commits everything waiting in one transaction;
`flush` awaits the commit of what was queued before it. Each process owns its live rows
under a lease that `renew` extends; `reclaim` settles the rows of a process whose lease
ran out.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import replace
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from .._errors import ConfigError, StoreUnavailable
from .._models import TaskInfo, TaskState
from .base import Orphan, Tick, TickClaim
from .batched import PROBE_EVERY, BatchedStore
from .keys import KeyHolder
from .keys_sqlite import PRUNE_KEYS, RELEASE_KEY, Claimers
from .lease_owner import OWNER_ID_MAX, gone_owners
from .peers import (
    EXPIRY_LEASES,
    FIGURES_MAX,
    PROCESSES_MAX,
    RESULT_MAX,
    TEXT_MAX,
    ProcessFigures,
    StoredTask,
    decode_figures,
    stored_task,
)
from .rows import CLAIM, INFO, Row, info_of, orphan_of
from .sqlite_schema import (
    CANCEL,
    CANCELS,
    FORGET_PROCESSES,
    INFO_COLUMNS,
    INTERRUPT,
    LEASING,
    LIVE,
    LIVE_INFO,
    MAX_BATCH,
    ORPHANS,
    PROCESSES,
    PRUNE,
    PUBLISH,
    RECENT_LIVE,
    RECENT_SETTLED,
    RENEW,
    SCHEMA,
    SCHEMA_VERSION,
    STRAYS,
    UNPUBLISH,
    UPGRADES,
    UPSERT_ROWS,
    immediate,
    orphans_of,
    upsert,
)
from .texts import interrupted_reason, utc_text
from .ticks import LAST_TICK, LIVE_TASK, RUN_TICK, SKIP_TICK, check_tick, read_ticks

__all__ = ["SqliteStore"]

logger = logging.getLogger("fastapi_offload")


class SqliteStore(BatchedStore):
    """Statuses in an SQLite file: live tasks always, finished ones up to `capacity` and
    `retention` seconds. `len()` is approximate: the row count as of this process's last
    batch that settled or deleted rows (writes since, here or elsewhere, are not counted)."""

    failures = (sqlite3.Error,)

    def __init__(
        self,
        path: str,
        *,
        owner: str,
        lease: float,
        capacity: int,
        retention: float,
        timeout: float = 1.0,
        busy_timeout: float | None = None,
        probe_every: float = PROBE_EVERY,
        key_ttl: float = 24 * 3600.0,
    ) -> None:
        self.path, self.owner, self.lease, self.key_ttl = path, owner, lease, key_ttl
        self._file = os.path.abspath(path)  # what is opened and checked, whatever the cwd
        self.capacity, self.retention = capacity, retention
        # How long a statement waits for another process's lock: the store timeout.
        self.busy_timeout = timeout if busy_timeout is None else busy_timeout
        self._conn: sqlite3.Connection | None = None  # the writer thread's
        self._inode: tuple[int, int] = (0, 0)
        self._generation = 0  # bumped when the file is reopened: readers reconnect too
        self._readers: dict[tuple[int, int], sqlite3.Connection] = {}
        self._claimers = Claimers(self._connect, self.busy_timeout)
        super().__init__(timeout=timeout, probe_every=probe_every)

    def __repr__(self) -> str:
        return f"SqliteStore(path={self.path!r}, owner={self.owner!r})"

    def _fetch(self, task_id: str) -> list[TaskInfo]:
        return self._select("id = ?", task_id)

    def _fetch_live(self) -> list[TaskInfo]:
        return self._select(LIVE, columns=LIVE_INFO)

    async def open(self) -> None:
        """Open (or create) the file; `ConfigError` naming `store` if it cannot be used."""
        self._take_owner_id()
        self._conn = await anyio.to_thread.run_sync(self._connect_writer)
        self._start_writer("offload:sqlite")

    async def close(self) -> None:
        await self._stop_writer()
        for conn in self._readers.values():
            conn.close()
        self._readers.clear()
        self._claimers.close()

    def _claim_key(self, key: str, holder: KeyHolder) -> KeyHolder | None:
        claimers, generation = self._claimers, self._generation
        return claimers.claim(key, holder, self.key_ttl, generation, self._writer.committing)

    def _release_keys(self, released: list[tuple[str, str]]) -> None:
        conn = self._writable()
        with immediate(conn):
            conn.executemany(RELEASE_KEY, released)

    # -- in threads ---------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:  # created 0600 before SQLite creates it with 0644 & ~umask
            os.close(os.open(self._file, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:  # as SQLite would say it: a ConfigError at open
            raise sqlite3.OperationalError(f"unable to open database file: {exc}") from exc
        conn = sqlite3.connect(
            self._file, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA journal_size_limit = 67108864")  # the WAL shrinks back after a burst
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        try:
            conn.execute("BEGIN IMMEDIATE")  # two processes opening at once create it once
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
            version = SCHEMA_VERSION
            if "meta" in tables:
                found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                version = (found.fetchone() or (0,))[0]
                if version > SCHEMA_VERSION:
                    raise self._unusable(
                        f"it holds schema version {version}, written by a newer "
                        f"fastapi-offload (this one reads up to {SCHEMA_VERSION}); upgrade "
                        "fastapi-offload in every process that shares the file, or use a new file"
                    )
            elif "tasks" in tables:
                raise self._unusable("it holds a `tasks` table fastapi-offload did not create")
            if "tasks" in tables:  # in place, in this transaction: once across processes
                for older in range(max(version, 1), SCHEMA_VERSION):
                    for statement in UPGRADES[older]:
                        conn.execute(statement)
            for statement in SCHEMA:
                conn.execute(statement)
            self._rows = conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()[0]
            conn.execute("COMMIT")
            stat = os.stat(self._file)
        except sqlite3.Error as exc:
            conn.close()
            raise self._unusable(exc) from exc
        except BaseException:
            conn.close()
            raise
        self._inode = (stat.st_dev, stat.st_ino)
        return conn

    def _reader(self) -> sqlite3.Connection:
        key = (threading.get_ident(), self._generation)
        conn = self._readers.get(key)
        if conn is None:
            conn = self._readers[key] = self._connect()
        return conn

    def _failed_in_thread(self, exc: BaseException) -> None:
        # A connection that met a broken file ("file is not a database") keeps saying so
        # after the file is repaired: the next read of this thread opens a new one.
        key = (threading.get_ident(), self._generation)
        if (conn := self._readers.pop(key, None)) is not None:
            conn.close()

    def _select(self, where: str, *args: object, columns: str = INFO_COLUMNS) -> list[TaskInfo]:
        # A row that cannot be decoded is skipped with a warning: the API keeps serving.
        # A file that cannot be read raises (a 503): "no such task" would be a lie.
        rows = self._reader().execute(f"SELECT {columns} FROM tasks WHERE {where}", args)
        return [
            info
            for row in rows.fetchall()
            if (info := self._info(dict(zip(INFO, row, strict=True))))
        ]

    def _info(self, values: dict[str, Any]) -> TaskInfo | None:
        try:
            return info_of(values)
        except ValueError as exc:
            self._unreadable(f"task {values['id']}", exc)
            return None

    def _reclaim(self) -> list[Orphan]:
        now, conn = time.time(), self._reader()
        # Owners whose process is gone from this host lose their rows now, not when their
        # lease runs out. Judged before the write lock (it reads /proc, not the file); a
        # row an owner settled meanwhile is not live any more and is not selected below.
        leasing = conn.execute(LEASING, (now, self.owner, OWNER_ID_MAX)).fetchall()
        gone = gone_owners(owner for (owner,) in leasing if isinstance(owner, str))
        for owner in gone:
            logger.info(
                "task store %s: the process of owner %s is gone from this host: its tasks "
                "are reclaimed now, not when its lease runs out", self, owner,
            )  # fmt: skip
        # IMMEDIATE: the write lock is taken before the select, so two processes
        # reclaiming at once never both see (and claim) the same row.
        with immediate(conn):
            rows = conn.execute(ORPHANS, (now, self.owner)).fetchall()
            claimed = {row[0] for row in rows}
            if gone:
                found = conn.execute(orphans_of(len(gone)), gone).fetchall()
                rows += [row for row in found if row[0] not in claimed]
                claimed.update(row[0] for row in found)
            orphans = [self._claim(conn, row, now) for row in rows]
            strays = conn.execute(STRAYS, (self.owner,)).fetchall()
            orphans += [
                self._claim(conn, row, now)
                for row in strays
                if row[0] not in self._here and row[0] not in claimed
            ]
            self._prune(conn, now)
        return [orphan for orphan in orphans if orphan is not None]

    def _claim(self, conn: sqlite3.Connection, row: tuple[Any, ...], now: float) -> Orphan | None:
        # The row holds the columns of `_CLAIMABLE`: those of a status, then what a reclaim needs.
        values = dict(zip((*INFO, *CLAIM), row, strict=True))
        if (info := self._info(values)) is None:
            return None
        scheduled = info.state is TaskState.SCHEDULED  # never started: run when due
        if (values["requeue"] or scheduled) and values["payload"] is not None:
            conn.execute(
                "UPDATE tasks SET state = ?, owner = ?, lease_until = ? WHERE id = ?",
                ("scheduled" if scheduled else "pending", self.owner, now + self.lease, info.id),
            )
            return orphan_of(info, values)
        # A lease that still runs was taken from an owner found gone (see `_reclaim`).
        lease_until = values["lease_until"]
        ended = utc_text(lease_until) if lease_until < now else None
        reason = partial(interrupted_reason, values["owner"], ended, bool(values["requeue"]))
        error = reason(found_gone=utc_text(now))
        conn.execute(INTERRUPT, (now, now, error, info.id))
        return Orphan(
            replace(info, state=TaskState.INTERRUPTED, finished_at=now, error=error), False
        )

    def _claim_tick(self, name: str, tick: float, task_id: str, overlap: bool) -> TickClaim:
        conn, now = self._reader(), time.time()
        # IMMEDIATE: the write lock before the read, so two processes never both see
        # the old tick and both take the new one.
        with immediate(conn):
            last = conn.execute(LAST_TICK, (name,)).fetchone()
            if last is not None and last[0] >= tick:
                conn.execute("ROLLBACK")
                return TickClaim(False)
            previous = None if last is None else last[1]
            running = None
            if previous is not None and not overlap:
                if conn.execute(LIVE_TASK.format(live=LIVE), (previous,)).fetchone():
                    running = str(previous)
            if running is not None:
                conn.execute(SKIP_TICK, (tick, now, name))
            else:
                conn.execute(RUN_TICK, (name, tick, task_id, tick, now))
        return TickClaim(True, running)

    def _ticks(self, names: list[str]) -> list[Tick]:
        rows = self._reader().execute(read_ticks(len(names)), names).fetchall()
        found = (
            self._decoded(f"the tick of {row[0]!s:.100}", partial(check_tick, row[0], row[1:]))
            for row in rows
        )
        return [tick for tick in found if tick is not None]

    def _processes(self) -> list[ProcessFigures]:
        rows = self._reader().execute(PROCESSES, (time.time(), FIGURES_MAX, PROCESSES_MAX))
        found = (
            self._decoded(
                f"process {str(owner)[:100]!r}",
                partial(decode_figures, text, here=owner == self.owner),
            )
            for owner, text in rows.fetchall()
        )
        return [figures for figures in found if figures is not None]

    def _recent(self, limit: int) -> list[StoredTask]:
        # One character past each cut: the row then shows that it was cut ("…").
        bounds = {"text": TEXT_MAX + 1, "result": RESULT_MAX + 1, "limit": limit}
        rows = [row for query in (RECENT_LIVE, RECENT_SETTLED) for row in
                self._reader().execute(query, bounds).fetchall()]  # fmt: skip
        found = (
            self._decoded(f"task {row[0]!s:.40}", partial(stored_task, row, self.owner))
            for row in rows
        )
        return [task for task in found if task is not None]

    def _request_cancel(self, task_id: str) -> bool:
        return self._reader().execute(CANCEL, (time.time(), task_id)).rowcount > 0

    def _cancels(self) -> list[str]:
        # A read of the few rows in the partial index: no write lock, no wait.
        return [task_id for (task_id,) in self._reader().execute(CANCELS, (self.owner,))]

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        # Bounded work per call, and called for every batch that settles rows, so pruning
        # keeps up with the writes and the file stays bounded.
        # A slack of 5 % before pruning by count: fewer, larger deletes cost the commits
        # that requests wait for less than a few rows in every batch.
        bounds: dict[str, float] = {"capacity": self.capacity, "slack": self.capacity // 20}
        bounds |= {"cutoff": now - self.retention, "most": 2 * MAX_BATCH}
        conn.execute(PRUNE, bounds)
        conn.execute(PRUNE_KEYS, (now - self.key_ttl, bounds["most"]))
        self._rows = conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()[0]

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _commit(
        self, pending: dict[str, Row | None], renew: bool, figures: str | None
    ) -> StoreUnavailable | None:
        try:
            conn = self._writable()
            now = time.time()
            with immediate(conn):
                rows = [row for row in pending.values() if row is not None]
                for start in range(0, len(rows), UPSERT_ROWS):
                    chunk = rows[start : start + UPSERT_ROWS]
                    values = [value for row in chunk for value in row]
                    conn.execute(upsert(len(chunk)), (*values, self.owner))
                if deleted := [(task_id,) for task_id, row in pending.items() if row is None]:
                    conn.executemany("DELETE FROM tasks WHERE id = ?", deleted)
                if renew:
                    conn.execute(RENEW, (now + self.lease, self.owner))
                if figures:
                    until = now + EXPIRY_LEASES * self.lease
                    conn.execute(PUBLISH, (self.owner, figures, until))
                    conn.execute(FORGET_PROCESSES, (now,))
                elif figures is not None:
                    conn.execute(UNPUBLISH, (self.owner,))
                # Requests wait for admissions (live rows): prune in the other batches.
                if deleted or renew or any(row.settled_at is not None for row in rows):
                    self._prune(conn, now)
        except Exception as exc:
            # Locked, disk full, I/O, a replaced file: worth retrying. Anything else (a
            # value SQLite cannot bind) would fail forever: drop those rows, loudly.
            retry = isinstance(exc, sqlite3.OperationalError | ConfigError)
            retry = retry or type(exc) is sqlite3.DatabaseError
            logger.error(
                "task store %s: could not write %d task status(es) (%s); %s: task ids %s. "
                "Check the disk space, and that the file and its directory exist and are "
                "writable.",
                self, len(pending), exc, "kept to retry" if retry else "dropped", [*pending][:20],
            )  # fmt: skip
            if not retry:
                pending.clear()
            if type(exc) is sqlite3.DatabaseError and self._conn is not None:
                # As for readers: this connection would keep failing on a repaired file.
                self._conn.close()
                self._conn = None
            return self._unavailable(exc)
        return None

    def _writable(self) -> sqlite3.Connection:
        # A file deleted (or its directory) under an open connection still takes writes,
        # into an inode nobody will read again: check, and reopen the path instead.
        if self._conn is not None:
            try:
                stat = os.stat(self._file)
                moved = (stat.st_dev, stat.st_ino) != self._inode
            except OSError:
                moved = True
            if moved:
                logger.warning("task store %s: the file was removed or replaced; reopening", self)
                self._conn.close()
                self._conn = None
        if self._conn is None:
            self._conn = self._connect_writer()
            self._generation += 1
        return self._conn

    def _unreadable(self, what: str, exc: Exception) -> None:
        logger.warning("task store %s: cannot read the status of %s: %s", self, what, exc)

    def _unusable(self, what: object) -> ConfigError:
        if isinstance(what, sqlite3.OperationalError):
            what = (
                f"it cannot be created or written ({what}); check that its directory exists "
                "and that this process may write to it and to the file"
            )
        elif isinstance(what, sqlite3.Error):
            what = (
                f"it is not a usable SQLite database ({what}); point store at another file, "
                "or move this one away"
            )
        return ConfigError(f"store (OFFLOAD_STORE) sqlite:///{self.path}: {what}")
