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

Its parts: the connections (`stores.sqlite_file`), the schema and statements
(`stores.sqlite_schema`), key claims (`stores.keys_sqlite`), tick claims
(`stores.ticks_sqlite`) and what a reclaim takes over (`stores.reclaim_sqlite`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from .._errors import ConfigError, StoreUnavailable
from .._models import TaskInfo
from .base import Orphan, Tick, TickClaim
from .batched import PROBE_EVERY, BatchedStore
from .keys import KeyHolder
from .keys_sqlite import PRUNE_KEYS, Claimers, release
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
from .pruning import PruneSchedule
from .reclaim_sqlite import owners_gone, reclaim
from .rows import INFO, Row, info_of
from .sqlite_file import SqliteFile
from .sqlite_schema import (
    CANCEL,
    CANCELS,
    FORGET_PROCESSES,
    INFO_COLUMNS,
    LIVE,
    LIVE_INFO,
    MAX_BATCH,
    PROCESSES,
    PRUNE,
    PUBLISH,
    RECENT_LIVE,
    RECENT_SETTLED,
    RENEW,
    UNPUBLISH,
    UPSERT_ROWS,
    immediate,
    upsert,
)
from .ticks import check_tick, read_ticks
from .ticks_sqlite import claim_tick

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
        self.capacity, self.retention = capacity, retention
        # How long a statement waits for another process's lock: the store timeout.
        self.busy_timeout = timeout if busy_timeout is None else busy_timeout
        self._file = SqliteFile(path, self.busy_timeout, store=self, counted=self._counted)
        self._claimers = Claimers(self._file.connect, self.busy_timeout)
        self._pruning = PruneSchedule(capacity)
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
        await anyio.to_thread.run_sync(self._file.open)
        self._start_writer("offload:sqlite")

    async def close(self) -> None:
        await self._stop_writer()
        self._file.close_readers()
        self._claimers.close()

    def _claim_key(self, key: str, holder: KeyHolder) -> KeyHolder | None:
        claimers, generation = self._claimers, self._file.generation
        return claimers.claim(key, holder, self.key_ttl, generation, self._writer.committing)

    def _release_keys(self, released: list[tuple[str, str]]) -> None:
        release(self._file.writer(), released)

    # -- in threads ---------------------------------------------------------------------

    def _failed_in_thread(self, exc: BaseException) -> None:
        self._file.drop_reader()

    def _counted(self, rows: int) -> None:
        self._rows = rows

    def _select(self, where: str, *args: object, columns: str = INFO_COLUMNS) -> list[TaskInfo]:
        # A row that cannot be decoded is skipped with a warning: the API keeps serving.
        # A file that cannot be read raises (a 503): "no such task" would be a lie.
        rows = self._file.reader().execute(f"SELECT {columns} FROM tasks WHERE {where}", args)
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
        now, conn = time.time(), self._file.reader()
        gone = owners_gone(conn, now, self.owner)
        for owner in gone:
            logger.info(
                "task store %s: the process of owner %s is gone from this host: its tasks "
                "are reclaimed now, not when its lease runs out", self, owner,
            )  # fmt: skip
        here, decode = self._here, self._info
        with immediate(conn):  # `reclaim` selects and claims in this one transaction
            orphans = reclaim(
                conn, now, owner=self.owner, lease=self.lease, gone=gone, here=here, decode=decode
            )
            self._prune(conn, now)
        return orphans

    def _claim_tick(self, name: str, tick: float, task_id: str, overlap: bool) -> TickClaim:
        return claim_tick(self._file.reader(), name, tick, task_id, overlap)

    def _ticks(self, names: list[str]) -> list[Tick]:
        rows = self._file.reader().execute(read_ticks(len(names)), names).fetchall()
        found = (
            self._decoded(f"the tick of {row[0]!s:.100}", partial(check_tick, row[0], row[1:]))
            for row in rows
        )
        return [tick for tick in found if tick is not None]

    def _processes(self) -> list[ProcessFigures]:
        rows = self._file.reader().execute(PROCESSES, (time.time(), FIGURES_MAX, PROCESSES_MAX))
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
                self._file.reader().execute(query, bounds).fetchall()]  # fmt: skip
        found = (
            self._decoded(f"task {row[0]!s:.40}", partial(stored_task, row, self.owner))
            for row in rows
        )
        return [task for task in found if task is not None]

    def _request_cancel(self, task_id: str) -> bool:
        return self._file.reader().execute(CANCEL, (time.time(), task_id)).rowcount > 0

    def _cancels(self) -> list[str]:
        # A read of the few rows in the partial index: no write lock, no wait.
        return [task_id for (task_id,) in self._file.reader().execute(CANCELS, (self.owner,))]

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        # Bounded work per call, and called often enough (`stores.pruning`) that pruning
        # keeps up with the writes and the file stays bounded.
        # A slack of 5 % before pruning by count: fewer, larger deletes cost the commits
        # that requests wait for less than a few rows in every batch.
        bounds: dict[str, float] = {"capacity": self.capacity, "slack": self.capacity // 20}
        bounds |= {"cutoff": now - self.retention, "most": 2 * MAX_BATCH}
        conn.execute(PRUNE, bounds)
        conn.execute(PRUNE_KEYS, (now - self.key_ttl, bounds["most"]))
        self._rows = conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()[0]

    def _disconnect(self) -> None:
        self._file.disconnect()

    def _commit(
        self, pending: dict[str, Row | None], renew: bool, figures: str | None
    ) -> StoreUnavailable | None:
        try:
            conn = self._file.writer()
            now = time.time()
            rows = [row for row in pending.values() if row is not None]
            deleted = [(task_id,) for task_id, row in pending.items() if row is None]
            prune = self._pruning.due_for(rows, now, deleted=bool(deleted), renew=renew)
            alone = not (deleted or renew or prune or figures is not None)
            if alone and 0 < len(rows) <= UPSERT_ROWS:
                # The common batch (a few requests' rows): one statement, atomic on its own,
                # so no BEGIN and COMMIT: each statement is a moment the writer gives up the
                # GIL and must win it back from the busy event loop.
                values = [value for row in rows for value in row]
                conn.execute(upsert(len(rows)), (*values, self.owner))
                return None
            with immediate(conn):
                for start in range(0, len(rows), UPSERT_ROWS):
                    chunk = rows[start : start + UPSERT_ROWS]
                    values = [value for row in chunk for value in row]
                    conn.execute(upsert(len(chunk)), (*values, self.owner))
                if deleted:
                    conn.executemany("DELETE FROM tasks WHERE id = ?", deleted)
                if renew:
                    conn.execute(RENEW, (now + self.lease, self.owner))
                if figures:
                    until = now + EXPIRY_LEASES * self.lease
                    conn.execute(PUBLISH, (self.owner, figures, until))
                    conn.execute(FORGET_PROCESSES, (now,))
                elif figures is not None:
                    conn.execute(UNPUBLISH, (self.owner,))
                if prune:  # `stores.pruning`
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
            if type(exc) is sqlite3.DatabaseError:
                # As for readers: this connection would keep failing on a repaired file.
                self._file.drop_writer()
            return self._unavailable(exc)
        return None

    def _unreadable(self, what: str, exc: Exception) -> None:
        logger.warning("task store %s: cannot read the status of %s: %s", self, what, exc)
