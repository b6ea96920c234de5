"""The connections of `SqliteStore` to its file: each in WAL mode, on a file created
readable and writable by its owner only; the writer thread's, which creates or upgrades
the schema as it opens and opens again when the file is removed or replaced; and one per
reader thread, opened again after that (or after it met a broken file)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable

from .._errors import ConfigError
from .sqlite_schema import SCHEMA, SCHEMA_VERSION, UPGRADES

__all__ = ["SqliteFile"]

logger = logging.getLogger("fastapi_offload")


def _use_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Put the file in WAL mode (a no-op once it is). Turning a file into WAL takes its
    exclusive lock, and SQLite refuses at once ("database is locked"), without waiting
    its busy timeout, all but one of the connections doing so at the same moment: the
    workers of `uvicorn --workers N` opening a new file (a third of pairs failed to
    start). Asked again here, backing off, for up to the busy timeout."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class SqliteFile:
    """The connections to the file at `path`, each waiting up to `busy_timeout` seconds for
    another process's lock. `store` names the store in log lines; `counted` is told the
    file's row count each time the writer's connection opens."""

    def __init__(
        self, path: str, busy_timeout: float, *, store: object, counted: Callable[[int], None]
    ) -> None:
        self.path, self.busy_timeout = path, busy_timeout
        self._file = os.path.abspath(path)  # what is opened and checked, whatever the cwd
        self._store, self._counted = store, counted
        self._conn: sqlite3.Connection | None = None  # the writer thread's
        self._inode: tuple[int, int] = (0, 0)
        self.generation = 0  # bumped when the file is reopened: readers reconnect too
        self._readers: dict[tuple[int, int], sqlite3.Connection] = {}

    def connect(self) -> sqlite3.Connection:
        """A new connection (of a reader, a key claim, or the writer)."""
        try:  # created 0600 before SQLite creates it with 0644 & ~umask
            os.close(os.open(self._file, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:  # as SQLite would say it: a ConfigError at open
            raise sqlite3.OperationalError(f"unable to open database file: {exc}") from exc
        conn = sqlite3.connect(
            self._file, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            _use_wal(conn, self.busy_timeout)
        except sqlite3.Error:
            conn.close()
            raise
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA journal_size_limit = 67108864")  # the WAL shrinks back after a burst
        return conn

    def open(self) -> None:
        """Open the writer's connection; `ConfigError` naming `store` if the file cannot
        be used."""
        self._conn = self._connect_writer()

    def writer(self) -> sqlite3.Connection:
        """The writer thread's connection, opened again if the file was removed or replaced
        (or after `drop_writer`)."""
        # A file deleted (or its directory) under an open connection still takes writes,
        # into an inode nobody will read again: check, and reopen the path instead.
        if self._conn is not None:
            try:
                stat = os.stat(self._file)
                moved = (stat.st_dev, stat.st_ino) != self._inode
            except OSError:
                moved = True
            if moved:
                logger.warning(
                    "task store %s: the file was removed or replaced; reopening", self._store
                )
                self._conn.close()
                self._conn = None
        if self._conn is None:
            self._conn = self._connect_writer()
            self.generation += 1
        return self._conn

    def drop_writer(self) -> None:
        """Close the writer's connection, to open a new one for the next batch: one that met
        a broken file keeps failing after the file is repaired."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def disconnect(self) -> None:
        """Close the writer's connection after its last batch."""
        if self._conn is not None:
            self._conn.close()

    def reader(self) -> sqlite3.Connection:
        """This thread's connection for the current file."""
        key = (threading.get_ident(), self.generation)
        conn = self._readers.get(key)
        if conn is None:
            conn = self._readers[key] = self.connect()
        return conn

    def drop_reader(self) -> None:
        # A connection that met a broken file ("file is not a database") keeps saying so
        # after the file is repaired: the next read of this thread opens a new one.
        key = (threading.get_ident(), self.generation)
        if (conn := self._readers.pop(key, None)) is not None:
            conn.close()

    def close_readers(self) -> None:
        for conn in self._readers.values():
            conn.close()
        self._readers.clear()

    def _connect_writer(self) -> sqlite3.Connection:
        try:
            conn = self.connect()
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
            self._counted(conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()[0])
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
