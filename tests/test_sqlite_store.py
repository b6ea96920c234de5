"""`SqliteStore`: a real SQLite file shared by stores of different owners (processes)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from fastapi_offload._errors import ConfigError, StoreUnavailable
from fastapi_offload._models import TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.base import Orphan, Store
from fastapi_offload.stores.peers import EXPIRY_LEASES, RESULT_MAX, LaneFigures, ProcessFigures
from fastapi_offload.stores.sqlite import SqliteStore
from fastapi_offload.stores.sqlite_schema import CANCELS, SCHEMA_VERSION, UPGRADES

pytestmark = pytest.mark.anyio

OpenStore = Callable[..., Awaitable[SqliteStore]]
SETTINGS: dict[str, Any] = {"lease": 60.0, "capacity": 100, "retention": 3600.0}


def record(task_id: str, state: TaskState = TaskState.PENDING, **fields: Any) -> TaskRecord:
    task = TaskRecord(task_id, "jobs.f", "thread", print, (), {}, None, 0, 1.0, state=state)
    for name, value in fields.items():
        setattr(task, name, value)
    if state.finished:
        task.finished_at = time.time()
    return task


def query(path: Path, sql: str, *args: Any) -> list[Any]:
    """Read the file as another process would, with a connection of its own."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(sql, args).fetchall()
    conn.close()
    return rows


async def wait_for_leases_to_expire(path: Path) -> None:
    ((until,),) = query(path, "SELECT max(lease_until) FROM tasks")
    await sleep_until(until)


async def sleep_until(moment: float) -> None:
    """Leases run out on the clock: there is no event to wait for."""
    await anyio.sleep(max(0.0, moment - time.time()) + 0.01)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "offload.db"


@pytest.fixture
async def open_store(db: Path) -> AsyncIterator[OpenStore]:
    opened: list[SqliteStore] = []

    async def open_store(owner: str = "a", path: Path = db, **settings: Any) -> SqliteStore:
        store = SqliteStore(str(path), owner=owner, **{**SETTINGS, **settings})
        await store.open()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


async def test_the_sqlite_store_implements_the_protocol(open_store: OpenStore) -> None:
    store: Store = await open_store()  # mypy checks the protocol
    assert store.durable and "offload.db" in repr(store) and "'a'" in repr(store)


async def test_what_one_process_flushed_another_reads(open_store: OpenStore) -> None:
    a, b = await open_store("a"), await open_store("b")
    a.put(record("live", TaskState.RUNNING, started_at=time.time(), attempts=1))
    a.put(record("done", TaskState.FAILED, error="ValueError('x')"))
    await a.flush()
    assert (info := await b.get("live")) is not None
    assert info.state is TaskState.RUNNING and info.attempts == 1 and info.lane == "thread"
    assert (info := await b.get("done")) is not None and info.error == "ValueError('x')"
    assert [info.id for info in await b.active()] == ["live"]
    assert await b.get("never") is None and len(a) == 2


async def test_live_records_are_answered_from_memory(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store()
    live = record("a")
    store.put(live)
    live.state = TaskState.RUNNING  # held by reference: current without a put
    monkeypatch.setattr(store, "_reader", lambda: pytest.fail("queried the file"))
    assert (info := await store.get("a")) is not None and info.state is TaskState.RUNNING
    monkeypatch.undo()  # `active` reads the other owners' rows, and overlays this one's
    assert [info.state for info in await store.active()] == [TaskState.RUNNING]


async def test_an_evicted_task_is_forgotten(open_store: OpenStore) -> None:
    a, b = await open_store("a"), await open_store("b")
    a.put(record("x"))
    await a.flush()
    a.evict("x")
    await a.flush()
    assert await a.get("x") is None and await b.get("x") is None and len(a) == 0


async def test_finished_rows_are_pruned_by_capacity_oldest_first(
    open_store: OpenStore, db: Path
) -> None:
    a, b = await open_store("a", capacity=3), await open_store("b")
    a.put(record("live"))
    for i in range(5):
        a.put(record(f"done{i}", TaskState.SUCCEEDED))
    await a.flush()
    assert await b.get("done0") is None and await b.get("done1") is None
    assert await b.get("done2") is not None and await b.get("live") is not None
    assert len(a) == 4 and query(db, "SELECT count(*) FROM tasks") == [(4,)]


async def test_finished_rows_are_pruned_by_retention(open_store: OpenStore, db: Path) -> None:
    a, b = await open_store("a", retention=3600.0), await open_store("b")
    a.put(record("old", TaskState.SUCCEEDED))
    a.put(record("live"))
    await a.flush()
    with sqlite3.connect(db) as conn:  # finished two hours ago
        conn.execute("UPDATE tasks SET settled_at = settled_at - 7200 WHERE id = 'old'")
    conn.close()
    a.put(record("new", TaskState.SUCCEEDED))
    await a.flush()
    assert await b.get("old") is None
    assert await b.get("new") is not None and await b.get("live") is not None


async def test_expired_leases_are_reclaimed_exactly_once_by_concurrent_reclaimers(
    open_store: OpenStore, db: Path
) -> None:
    dead = await open_store("worker-1", lease=0.05)
    ids = {f"t{i}" for i in range(50)}
    for task_id in ids:
        dead.put(record(task_id, TaskState.RUNNING))
    await dead.flush()
    await wait_for_leases_to_expire(db)
    a, b = await open_store("a"), await open_store("b")
    results: dict[str, list[Orphan]] = {}

    async def reclaim(store: SqliteStore) -> None:
        results[store.owner] = await store.reclaim()

    async with anyio.create_task_group() as group:  # two threads, two connections
        group.start_soon(reclaim, a)
        group.start_soon(reclaim, b)
    claimed = [orphan.info.id for orphans in results.values() for orphan in orphans]
    assert sorted(claimed) == sorted(ids)  # each by exactly one reclaimer
    orphan = (results["a"] + results["b"])[0]
    assert not orphan.requeued and orphan.info.state is TaskState.INTERRUPTED
    assert (
        orphan.info.error is not None
        and "(worker-1) stopped before it finished" in orphan.info.error
    )
    assert "lease ran out at" in orphan.info.error and "@task(requeue=True)" in orphan.info.error
    assert (info := await b.get(orphan.info.id)) is not None and info == orphan.info
    assert await a.reclaim() == [] and await b.reclaim() == [] and await a.active() == []


async def test_a_requeue_task_is_reclaimed_for_a_run_by_the_claimer(
    open_store: OpenStore, db: Path
) -> None:
    dead = await open_store("worker-1", lease=0.05)
    call = record("r", requeue=True, payload=b"pickled call", timeout=5.0, retries=2)
    dead.put(call)
    await dead.flush()
    await wait_for_leases_to_expire(db)
    a, b = await open_store("a"), await open_store("b")
    assert await a.reclaim() == [
        Orphan(call.info(), requeued=True, payload=b"pickled call", timeout=5.0, retries=2)
    ]
    [(owner, state, lease_until)] = query(db, "SELECT owner, state, lease_until FROM tasks")
    assert owner == "a" and state == "pending" and lease_until > time.time() + 30
    assert await b.reclaim() == []  # a holds it now, under a fresh lease


async def test_a_stalled_owner_does_not_take_back_a_reclaimed_task(
    open_store: OpenStore, db: Path
) -> None:
    # Its event loop froze past the lease: another process reclaimed the task and runs
    # it again. The stalled process's late writes must not overwrite that claim.
    stalled = await open_store("worker-1", lease=0.05)
    call = record("r", TaskState.RUNNING, requeue=True, payload=b"pickled call")
    stalled.put(call)
    await stalled.flush()
    await wait_for_leases_to_expire(db)
    claimer = await open_store("a")
    assert [o.info.id for o in await claimer.reclaim()] == ["r"]
    call.state = TaskState.SUCCEEDED
    stalled.put(call)
    await stalled.flush()
    assert query(db, "SELECT owner, state FROM tasks") == [("a", "pending")]


async def test_a_stalled_owner_does_not_revive_a_task_settled_meanwhile(
    open_store: OpenStore, db: Path
) -> None:
    # Found in review: a row with no owner (interrupted) took the stalled process's write.
    stalled = await open_store("worker-1", lease=0.05)
    call = record("x", TaskState.RUNNING)
    stalled.put(call)
    await stalled.flush()
    await wait_for_leases_to_expire(db)
    claimer = await open_store("a")
    assert [o.info.state for o in await claimer.reclaim()] == [TaskState.INTERRUPTED]
    call.state = TaskState.SUCCEEDED
    stalled.put(call)
    await stalled.flush()
    assert query(db, "SELECT owner, state FROM tasks") == [(None, "interrupted")]


async def test_a_claim_not_taken_up_is_returned_by_the_next_reclaim(
    open_store: OpenStore, db: Path
) -> None:
    dead = await open_store("worker-1", lease=0.05)
    dead.put(record("r", TaskState.RUNNING, requeue=True, payload=b"call"))
    await dead.flush()
    await wait_for_leases_to_expire(db)
    claimer = await open_store("a")
    assert [o.info.id for o in await claimer.reclaim()] == ["r"]  # ... never adopted
    again = await claimer.reclaim()
    assert [(o.info.id, o.requeued, o.payload) for o in again] == [("r", True, b"call")]


async def test_an_unexpired_lease_is_not_reclaimed(open_store: OpenStore) -> None:
    alive = await open_store("worker-1", lease=60.0)
    alive.put(record("x", TaskState.RUNNING))
    await alive.flush()
    b = await open_store("b")
    assert await b.reclaim() == []
    assert (info := await b.get("x")) is not None and info.state is TaskState.RUNNING


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="boot ids: Linux only")
async def test_a_gone_owner_of_this_host_loses_its_lease_at_once_and_a_foreign_one_keeps_it(
    open_store: OpenStore, db: Path
) -> None:
    # An owner id formed by a process that then died, and the same id from another host
    # (whose pid, looked up here, is just as absent): only this host's is judged gone.
    form = "from fastapi_offload.stores.lease_owner import new_owner_id; print(new_owner_id())"
    gone = (await anyio.run_process([sys.executable, "-c", form])).stdout.decode().strip()
    foreign = "elsewhere" + gone[gone.index(":") :]
    for owner, task_id in [(gone, "dead-here"), (foreign, "dead-elsewhere")]:
        store = await open_store(owner, lease=60.0)
        store.owner = owner  # as that process (open gives a store of this one its own id)
        store.put(record(task_id, TaskState.RUNNING))
        await store.flush()
    b = await open_store("b")
    orphans = await b.reclaim()
    assert [o.info.id for o in orphans] == ["dead-here"], "not reclaimed before its lease ran out"
    orphan = orphans[0]
    assert orphan.info.state is TaskState.INTERRUPTED
    assert f"({gone}) stopped before it finished: its process no longer runs on this host" in (
        orphan.info.error or ""
    )
    assert (info := await b.get("dead-elsewhere")) is not None and info.state is TaskState.RUNNING
    [(owner, lease_until)] = query(
        db, "SELECT owner, lease_until FROM tasks WHERE state = 'running'"
    )
    assert owner == foreign and lease_until > time.time() + 50


async def test_a_store_opened_in_another_process_than_its_owner_id_takes_its_own(
    open_store: OpenStore,
) -> None:
    form = "from fastapi_offload.stores.lease_owner import new_owner_id; print(new_owner_id())"
    parents = (await anyio.run_process([sys.executable, "-c", form])).stdout.decode().strip()
    store = await open_store(parents)
    assert store.owner != parents and store.owner.split(":")[1] == str(os.getpid())
    assert store.owner in repr(store._writes)


async def test_renew_keeps_a_lease_alive_past_its_first_expiry(
    open_store: OpenStore, db: Path
) -> None:
    a = await open_store("a", lease=0.5)
    a.put(record("x", TaskState.RUNNING))
    await a.flush()
    ((first_expiry,),) = query(db, "SELECT lease_until FROM tasks")
    b = await open_store("b")
    async with anyio.create_task_group() as group:

        async def heartbeat() -> None:  # as the runtime does, well within the lease
            while True:
                await a.renew()
                await anyio.sleep(0.05)

        group.start_soon(heartbeat)
        await sleep_until(first_expiry + 0.5)  # a whole lease past the first expiry
        assert await b.reclaim() == []
        group.cancel_scope.cancel()
    ((renewed,),) = query(db, "SELECT lease_until FROM tasks")
    assert renewed > first_expiry + 0.5


async def test_the_tasks_of_a_killed_process_are_interrupted(
    open_store: OpenStore, db: Path
) -> None:
    code = f"""
import asyncio, os, signal
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.sqlite import SqliteStore

async def main():
    store = SqliteStore({str(db)!r}, owner="killed", lease=0.2, capacity=10, retention=60)
    await store.open()
    store.put(TaskRecord("k", "jobs.f", "thread", print, (), {{}}, None, 0, 1.0))
    await store.flush()
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""
    process = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    store = await open_store("a")
    await wait_for_leases_to_expire(db)  # its 0.2 s lease, from the row it committed
    orphans = await store.reclaim()
    assert [orphan.info.id for orphan in orphans] == ["k"]
    assert orphans[0].info.error is not None and "(killed)" in orphans[0].info.error
    assert (info := await store.get("k")) is not None and info.state is TaskState.INTERRUPTED


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


async def test_a_version_1_file_is_upgraded_in_place_and_keeps_its_rows(
    open_store: OpenStore, db: Path
) -> None:
    with sqlite3.connect(db) as conn:
        for statement in V1_SCHEMA:
            conn.execute(statement)
        conn.executemany(f"INSERT INTO tasks VALUES ({', '.join('?' * 18)})", V1_ROWS)
    conn.close()
    stores: list[SqliteStore] = []

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
    a = await open_store("a", path=directory / "offload.db", probe_every=0.1)
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
    b = await open_store("b", path=directory / "offload.db")
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


async def test_a_corrupted_row_reads_as_unknown_with_a_warning(
    open_store: OpenStore, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await open_store("a"), await open_store("b")
    a.put(record("bad", TaskState.SUCCEEDED))
    a.put(record("live"))
    a.put(record("result", TaskState.SUCCEEDED, result="[1, 2]"))
    await a.flush()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tasks SET state = 'nonsense' WHERE id = 'bad'")
        conn.execute("UPDATE tasks SET created_at = 'garbage' WHERE id = 'live'")
        conn.execute("UPDATE tasks SET result = '[1, 2' WHERE id = 'result'")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="fastapi_offload"):
        assert await b.get("bad") is None and await b.get("result") is None
        assert await b.active() == []
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("status of task bad: " in m for m in warned)
    assert any("status of task live: " in m for m in warned)
    assert any("status of task result: " in m for m in warned)


async def test_close_writes_what_is_left(open_store: OpenStore, db: Path) -> None:
    a = await open_store("a")
    a.put(record("x", TaskState.SUCCEEDED))
    await a.close()
    assert query(db, "SELECT id, state FROM tasks") == [("x", "succeeded")]
    with pytest.raises(StoreUnavailable, match="not open"):
        await a.flush()


async def test_the_file_stays_bounded_over_100_000_tasks(open_store: OpenStore, db: Path) -> None:
    store = await open_store("a", capacity=1000)
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


# -- what the processes sharing the file tell each other (issue 19) ---------------------


def figures(host: str, pid: int, running: int = 0) -> ProcessFigures:
    lanes = (LaneFigures("thread", 4, running, 0), LaneFigures("process", 2, 0, 3))
    return ProcessFigures(host, pid, started_at=time.time() - 60, at=time.time(), lanes=lanes)


async def test_each_process_publishes_its_figures_until_they_expire(
    open_store: OpenStore, db: Path
) -> None:
    a = await open_store("h1:11:x", lease=0.3)
    b = await open_store("h2:22:y", lease=0.3)
    await a.renew(figures("h1", 11, running=1))
    await b.renew(figures("h2", 22))
    found = {p.label: p for p in await a.processes()}
    assert {label: p.here for label, p in found.items()} == {"h1:11": True, "h2:22": False}
    assert found["h1:11"].lanes == (LaneFigures("thread", 4, 1, 0), LaneFigures("process", 2, 0, 3))
    # b stops renewing (killed): gone from every reader after EXPIRY_LEASES leases, and its
    # row deleted by the next process that publishes, so the table stays bounded.
    await anyio.sleep(0.3 * EXPIRY_LEASES + 0.05)
    await a.renew(figures("h1", 11))
    assert [p.label for p in await a.processes()] == ["h1:11"]
    assert query(db, "SELECT owner FROM processes") == [("h1:11:x",)]
    await a.close()  # a clean stop: gone at once
    assert query(db, "SELECT owner FROM processes") == []


async def test_published_figures_are_read_as_untrusted_input(
    open_store: OpenStore, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = await open_store("h1:11:x")
    await a.renew(figures("h1", 11))
    until = time.time() + 60
    forged = [
        ("long", json.dumps({"host": "x" * 5000})),  # past FIGURES_MAX: not even loaded
        ("pickle", b"\x80\x04\x95cos\nsystem\n."),  # bytes of a pickle, never unpickled
        ("types", json.dumps({"host": "h", "pid": True, "started_at": 1, "at": 1, "lanes": []})),
        ("lanes", json.dumps({"host": "h", "pid": 1, "started_at": 1, "at": 1, "lanes": [[1]]})),
    ]
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO processes VALUES (?, ?, ?)", [(*f, until) for f in forged])
    conn.close()
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        assert [p.label for p in await a.processes()] == ["h1:11"]
    assert len([r for r in caplog.records if "cannot read process" in r.message]) == 3


async def test_recent_tasks_name_their_process_and_come_cut(
    open_store: OpenStore, db: Path
) -> None:
    a, b = await open_store("h1:11:x"), await open_store("h2:22:y")
    a.put(record("done", TaskState.SUCCEEDED, result=json.dumps({"k": "v" * 5000})))
    b.put(record("live", TaskState.RUNNING, error="E" * 9000))
    await a.flush()
    await b.flush()
    found = {task.id: task for task in await a.recent(10)}
    assert {i: (t.process, t.here, t.state) for i, t in found.items()} == {
        "done": ("h1:11", True, "succeeded"),
        "live": ("h2:22", False, "running"),
    }
    assert found["done"].result is not None and len(found["done"].result) == RESULT_MAX
    assert found["done"].result.endswith("…") and found["live"].error == "E" * 1999 + "…"
    # Once settled, the row still names the process that ran it (its lease is cleared).
    assert query(db, "SELECT owner, ran_by FROM tasks WHERE id = 'done'") == [(None, "h1:11:x")]


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
    assert query(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [(4,)]
    found = {task.id: task for task in await store.recent(10)}
    assert {i: (t.process, t.state) for i, t in found.items()} == {
        "live": (None, "running"),  # written before version 4: no process to name
        "done": (None, "failed"),
    }
    await store.renew(figures("h1", 11))
    assert [p.label for p in await store.processes()] == ["h1:11"]
