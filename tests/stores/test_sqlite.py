"""`SqliteStore`'s own: its schema and upgrades, its file, locks and errors (what it shares
with the Redis store is in `test_durable.py`)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from fastapi_offload._errors import ConfigError, StoreUnavailable
from fastapi_offload._models import TaskState
from fastapi_offload.stores.sqlite_schema import CANCELS, SCHEMA_VERSION, UPGRADES

from .helpers import SETTINGS, Durable, OpenStore, RedisStore, SqliteStore, figures, query, record

pytestmark = pytest.mark.anyio
STORE_KINDS = ["sqlite"]  # the `durable` fixture's


@pytest.fixture
def open_store(durable: Durable) -> OpenStore:
    return durable.open


# Version 1 of the schema, as fastapi-offload wrote it before results and cancel requests.
V1_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta VALUES ('schema_version', 1), ('rows', 0), ('settled', 0)",
    "CREATE TABLE tasks (id TEXT PRIMARY KEY, name TEXT NOT NULL, lane TEXT NOT NULL, state "
    "TEXT NOT NULL, created_at REAL, started_at REAL, finished_at REAL, attempts INTEGER NOT "
    "NULL, error TEXT, owner TEXT, lease_until REAL, handed_off INTEGER NOT NULL, requeue "
    "INTEGER NOT NULL, payload BLOB, timeout REAL, retries INTEGER NOT NULL, retry_delay REAL "
    "NOT NULL, settled_at REAL)",
    "CREATE INDEX tasks_live ON tasks (lease_until) WHERE state IN ('pending', 'running') AND "
    "handed_off = 0",
    "CREATE INDEX tasks_settled ON tasks (settled_at) WHERE settled_at IS NOT NULL",
    "CREATE TRIGGER tasks_added AFTER INSERT ON tasks BEGIN UPDATE meta SET value = value + 1 "
    "WHERE key = 'rows' OR (key = 'settled' AND NEW.settled_at NOTNULL); END",
    "CREATE TRIGGER tasks_removed AFTER DELETE ON tasks BEGIN UPDATE meta SET value = value - 1 "
    "WHERE key = 'rows' OR (key = 'settled' AND OLD.settled_at NOTNULL); END",
    "CREATE TRIGGER tasks_settled_changed AFTER UPDATE OF settled_at ON tasks WHEN "
    "(OLD.settled_at ISNULL) != (NEW.settled_at ISNULL) BEGIN UPDATE meta SET value = value + "
    "CASE WHEN NEW.settled_at ISNULL THEN -1 ELSE 1 END WHERE key = 'settled'; END",
)
NOW = time.time()
V1_ROWS = [  # as version 1's UPSERT wrote them: a live row and a finished one
    ("live", "jobs.f", "thread", "running", NOW - 9, NOW - 8, None, 1, None, "v1-owner",
     NOW + 60, 0, 1, b"pickled call", None, 0, 1.0, None),
    ("done", "jobs.g", "process", "failed", NOW - 9, NOW - 8, NOW - 7, 2, "ValueError('x')",
     None, None, 0, 0, None, 5.0, 1, 1.0, NOW - 7),
]  # fmt: skip


async def test_workers_opening_a_new_file_at_the_same_moment_all_open(
    open_store: OpenStore, tmp_path: Path
) -> None:
    # `uvicorn --workers N` on a new file: each process turns it into WAL as it opens,
    # and SQLite refuses all but one of those at once ("database is locked") without
    # waiting its busy timeout. Refused, a worker did not start (about a third of
    # pairs here). Three stores at once, twenty new files: all of them must open.
    for attempt in range(20):
        db = tmp_path / f"new-{attempt}.db"
        stores: list[SqliteStore | RedisStore] = []

        async def open_one(owner: str, db: Path = db, into: list[Any] = stores) -> None:
            into.append(await open_store(owner, at=db))

        async with anyio.create_task_group() as group:
            for owner in "abc":
                group.start_soon(open_one, owner)
        assert len(stores) == 3
        assert query(db, "PRAGMA journal_mode") == [("wal",)]


async def test_a_version_1_file_is_upgraded_in_place_and_keeps_its_rows(
    open_store: OpenStore, db: Path
) -> None:
    with sqlite3.connect(db) as conn:
        for statement in V1_SCHEMA:
            conn.execute(statement)
        conn.executemany(f"INSERT INTO tasks VALUES ({', '.join('?' * 18)})", V1_ROWS)
    conn.close()
    stores: list[SqliteStore | RedisStore] = []

    async def open_one(owner: str) -> None:
        stores.append(await open_store(owner))

    async with anyio.create_task_group() as group:  # two processes upgrading at once
        group.start_soon(open_one, "a")
        group.start_soon(open_one, "b")
    a, b = stores
    assert query(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
    assert (info := await a.get("done")) is not None and len(a) == 2
    assert (info.name, info.lane, info.state, info.attempts, info.finished_at) == (
        "jobs.g", "process", TaskState.FAILED, 2, NOW - 7
    )  # fmt: skip
    assert (info.error, info.result, info.progress) == ("ValueError('x')", None, None)
    assert [info.id for info in await b.active()] == ["live"]
    assert await b.request_cancel("live") is True  # the new column, on an old row
    a.put(record("new", TaskState.SUCCEEDED, result='{"k": "v"}', progress=1.0))
    await a.flush()
    assert (info := await b.get("new")) is not None and info.result == {"k": "v"}
    await a.close()
    await open_store("c")  # opening it again upgrades nothing twice
    assert query(db, "SELECT count(*), sum(settled_at NOTNULL) FROM tasks") == [(3, 2)]
    assert dict(query(db, "SELECT key, value FROM meta"))["rows"] == 3


async def test_a_version_2_file_gains_the_task_owner_column_and_keeps_its_rows(
    open_store: OpenStore, db: Path
) -> None:
    # Version 2: version 1 and its upgrade (results, progress, cancel requests).
    with sqlite3.connect(db) as conn:
        for statement in V1_SCHEMA:
            conn.execute(statement)
        for statement in UPGRADES[1]:
            conn.execute(statement)
        conn.execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'")
        conn.executemany(f"INSERT INTO tasks VALUES ({', '.join('?' * 22)})", [
            (*row, '"kept"' if row[0] == "done" else None, None, None, None) for row in V1_ROWS
        ])  # fmt: skip
    conn.close()
    store = await open_store("a")
    assert query(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
    assert (info := await store.get("done")) is not None
    assert (info.result, info.owner, info.error) == ("kept", None, "ValueError('x')")
    mine = record("mine", TaskState.SUCCEEDED)
    mine.owner = "user-42"
    store.put(mine)
    await store.flush()
    other = await open_store("b")  # reads the row from the file, not from `put`'s record
    assert (info := await other.get("mine")) is not None and info.owner == "user-42"
    assert "owner" not in info.to_dict()  # never served by a status route


async def test_a_cancel_request_is_kept_on_the_row_until_the_task_settles(
    open_store: OpenStore, db: Path
) -> None:
    a, b = await open_store("a"), await open_store("b")
    task = record("x", TaskState.RUNNING)
    a.put(task)
    await a.flush()
    assert await b.request_cancel("x") is True
    ((requested,),) = query(db, "SELECT cancel_requested FROM tasks")
    assert requested is not None and requested <= time.time()
    task.state = TaskState.CANCELLED
    a.put(task)
    await a.flush()
    assert query(db, "SELECT owner, cancel_requested FROM tasks") == [(None, None)]
    ((plan,),) = [row[3:] for row in query(db, "EXPLAIN QUERY PLAN " + CANCELS, "a")]
    assert "USING INDEX tasks_cancel" in plan  # the poll reads only the requested rows


async def test_request_cancel_fails_while_another_connection_locks_the_file(
    open_store: OpenStore, db: Path
) -> None:
    a = await open_store("a", busy_timeout=0.05, probe_every=0.1)
    a.put(record("x"))
    await a.flush()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match=r"could not ask for task x to be cancelled"):
            await a.request_cancel("x")
        assert await a.cancel_requests() == []  # the poll only reads: it never waits on a lock
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await anyio.sleep(0.15)  # the write breaker lets a probe through again
    assert await a.request_cancel("x") is True and await a.cancel_requests() == ["x"]


def newer_schema(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION + 1,))
    conn.close()


def foreign_table(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tasks (title TEXT)")
    conn.close()


@pytest.mark.parametrize(
    ("make", "where", "says"),
    [
        (lambda path: None, "missing/offload.db", "cannot be created or written"),
        (lambda path: path.parent.write_text("a file"), "file/offload.db", "cannot be created"),
        (lambda path: path.write_bytes(b"not sqlite" * 500), "junk.db", "not a usable SQLite"),
        (newer_schema, "newer.db", f"version {SCHEMA_VERSION + 1}, written by a newer fastapi"),
        (foreign_table, "theirs.db", "`tasks` table fastapi-offload did not create"),
    ],
)
async def test_a_file_that_cannot_be_used_is_a_config_error(
    tmp_path: Path, make: Callable[[Path], object], where: str, says: str
) -> None:
    path = tmp_path / where
    make(path)
    store = SqliteStore(str(path), owner="a", **SETTINGS)
    with pytest.raises(ConfigError, match=r"^store \(OFFLOAD_STORE\) sqlite:///") as caught:
        await store.open()
    assert str(path) in str(caught.value) and says in str(caught.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
async def test_an_unwritable_directory_is_a_config_error(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o500)
    try:
        with pytest.raises(ConfigError, match="cannot be created or written"):
            await SqliteStore(str(tmp_path / "x.db"), owner="a", **SETTINGS).open()
    finally:
        os.chmod(tmp_path, 0o700)


async def test_a_flush_fails_while_the_directory_is_gone_and_works_once_it_is_back(
    open_store: OpenStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    a = await open_store("a", at=directory / "offload.db", probe_every=0.1)
    a.put(record("before"))
    await a.flush()
    shutil.rmtree(directory)
    a.put(record("x"))
    with pytest.raises(StoreUnavailable, match=r"^the task store is unavailable") as caught:
        await a.flush()
    said = str(caught.value)
    assert "could not record the task" in said and "offload.db" not in said
    assert "kept to retry" in caplog.text and "'x'" in caplog.text
    assert "offload.db" in caplog.text  # the log names the file
    directory.mkdir()
    await anyio.sleep(0.15)  # the write breaker lets a probe through again
    await a.flush()  # the failed batch's row is written with the next one
    b = await open_store("b", at=directory / "offload.db")
    assert await b.get("x") is not None


async def test_a_flush_fails_while_another_connection_locks_the_file(
    open_store: OpenStore, db: Path
) -> None:
    a = await open_store("a", busy_timeout=0.05, probe_every=0.1)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        a.put(record("x"))
        with pytest.raises(StoreUnavailable, match="could not record the task") as caught:
            await a.flush()
        assert caught.value.cause == "OperationalError: database is locked"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await anyio.sleep(0.15)  # the write breaker lets a probe through again
    await a.flush()
    assert query(db, "SELECT id FROM tasks") == [("x",)]


async def test_the_file_stays_bounded_over_100_000_tasks(open_store: OpenStore, db: Path) -> None:
    # A flush of 10,000 tasks at once: more time than one request's flush gets, so that
    # a machine busy with the rest of the suite does not fail what is a test of size.
    store = await open_store("a", capacity=1000, timeout=10.0)
    for i in range(5):
        store.put(record(f"live{i}"))
    for i in range(100_000):
        task = record(f"t{i}")
        store.put(task)
        task.state, task.finished_at = TaskState.SUCCEEDED, time.time()
        store.put(task)
        if i % 10_000 == 0:
            await store.flush()
    await store.flush()
    assert query(db, "SELECT count(*) FROM tasks") == [(1005,)] and len(store) == 1005
    size = sum(path.stat().st_size for path in db.parent.glob("offload.db*"))
    print(f"file size after 100,000 tasks, capacity 1000: {size / 1e6:.2f} MB")
    assert size < 20e6  # not growing with the task count


async def test_a_version_3_file_gains_the_ran_by_column_and_the_processes_table(
    open_store: OpenStore, db: Path
) -> None:
    with sqlite3.connect(db) as conn:
        for statement in V1_SCHEMA:
            conn.execute(statement)
        for statement in (*UPGRADES[1], *UPGRADES[2]):
            conn.execute(statement)
        conn.execute("UPDATE meta SET value = 3 WHERE key = 'schema_version'")
        conn.executemany(
            f"INSERT INTO tasks VALUES ({', '.join('?' * 23)})",
            [(*row, None, None, None, None, None) for row in V1_ROWS],
        )
    conn.close()
    store = await open_store("h1:11:x")
    assert query(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
    found = {task.id: task for task in await store.recent(10)}
    assert {i: (t.process, t.state) for i, t in found.items()} == {
        "live": (None, "running"),  # written before version 4: no process to name
        "done": (None, "failed"),
    }
    await store.renew(figures("h1", 11))
    assert [p.label for p in await store.processes()] == ["h1:11"]
