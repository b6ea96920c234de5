"""Idempotency keys in each store (`Store.claim_key`, `release_key`): held while the task is
live, `key_ttl` past its end (even once its row was pruned), for a grace while its row is
not written yet; one holder across processes; bounded in time when the store is not."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest

from fastapi_offload._errors import StoreUnavailable
from fastapi_offload._models import TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.keys import CLAIM_GRACE, KeyHolder
from fastapi_offload.stores.memory import MemoryStore
from fastapi_offload.stores.sqlite_schema import SCHEMA_VERSION, UPGRADES
from tests.stores.test_outage import OwnRedis
from tests.stores.test_outage import own_redis as own_redis  # the fixture

from .conftest import KINDS_AND_MEMORY
from .helpers import Durable, RedisStore, query, record, sleep_until
from .test_sqlite import V1_ROWS, V1_SCHEMA

pytestmark = pytest.mark.anyio


def keyed(task_id: str, key: str = "k", state: TaskState = TaskState.PENDING) -> TaskRecord:
    return record(task_id, state, key=key)


def holder(task_id: str) -> KeyHolder:
    return KeyHolder(task_id, "jobs.f", "thread")


def settle(store: Any, task: TaskRecord) -> None:
    task.state, task.finished_at = TaskState.SUCCEEDED, time.time()
    store.put(task)


def age_claim(durable: Durable, store: Any, key: str, seconds: float) -> None:
    """Make the claim of `key` look `seconds` older."""
    if durable.kind == "memory":
        store.keys._claims[key].claimed_at -= seconds
    else:
        fields = durable.key_fields(key)
        assert fields is not None
        durable.set_key_field(key, "claimed_at", fields["claimed_at"] - seconds)


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_a_key_is_held_while_its_task_is_live_then_key_ttl_past_its_end(
    durable: Durable,
) -> None:
    store = await durable.open("a", key_ttl=0.5)
    assert store.claim_key("k", holder("a")) is None
    task = keyed("a", state=TaskState.SCHEDULED)
    task.due_at = time.time() + 60
    store.put(task)
    await store.flush()
    assert store.claim_key("k", holder("b")) == holder("a")  # scheduled
    task.state = TaskState.PENDING
    store.put(task)
    await store.flush()
    assert store.claim_key("k", holder("b")) == holder("a")  # pending
    task.state = TaskState.RUNNING
    store.put(task)
    await store.flush()
    assert store.claim_key("k", holder("b")) == holder("a")
    settle(store, task)
    await store.flush()
    ended = time.time()
    assert store.claim_key("k", holder("b")) == holder("a")  # finished, within key_ttl
    await anyio.sleep(max(0.0, ended + 0.6 - time.time()))
    assert store.claim_key("k", holder("b")) is None  # expired: taken over in the claim
    assert store.claim_key("k", holder("c")) == holder("b")
    assert store.claim_key("other", holder("c")) is None  # keys are apart


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_a_claim_whose_task_is_not_written_yet_holds_its_key_for_the_grace(
    durable: Durable,
) -> None:
    store = await durable.open("a")
    assert store.claim_key("k", holder("a")) is None  # its request has not committed yet
    assert store.claim_key("k", holder("b")) == holder("a")
    age_claim(durable, store, "k", CLAIM_GRACE + 1)  # its process died before the write
    assert store.claim_key("k", holder("b")) is None


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_a_key_outlives_its_pruned_row_until_key_ttl(durable: Durable) -> None:
    # Rows are pruned by count (`status_capacity`), often long before the key_ttl.
    store = await durable.open("a", capacity=1, key_ttl=1.0)
    assert store.claim_key("k", holder("a")) is None
    task = keyed("a")
    store.put(task)
    await store.flush()
    settle(store, task)
    await store.flush()
    ended = time.time()
    for other in ("b", "c", "d"):  # settled rows that push the first one out
        store.put(record(other, TaskState.SUCCEEDED))
        await store.flush()
    if durable.kind != "memory":
        assert await (await durable.open("other")).get("a") is None  # pruned
        fields = durable.key_fields("k")
        assert fields is not None and fields["settled_at"] == pytest.approx(ended, abs=0.5)
    assert store.claim_key("k", holder("x")) == holder("a")
    await anyio.sleep(max(0.0, ended + 1.1 - time.time()))
    assert store.claim_key("k", holder("x")) is None


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_a_released_key_is_free_again_and_only_its_holder_releases_it(
    durable: Durable,
) -> None:
    store = await durable.open("a")
    assert store.claim_key("k", holder("a")) is None
    store.release_key("k", "someone-else")
    await store.flush()
    assert store.claim_key("k", holder("b")) == holder("a")
    store.release_key("k", "a")  # its request failed before the response
    await store.flush()
    assert store.claim_key("k", holder("b")) is None
    if durable.kind != "memory":
        assert (durable.key_fields("k") or {})["task_id"] == "b"


async def test_a_task_handed_to_a_remote_backend_holds_its_key_key_ttl_past_the_hand_off(
    durable: Durable,
) -> None:
    store = await durable.open("a", key_ttl=0.5)
    assert store.claim_key("k", KeyHolder("a", "jobs.f", "celery")) is None
    task = keyed("a")
    task.lane, task.handed_off = "celery", True  # what the store keeps once sent
    store.put(task)
    await store.flush()
    handed = time.time()
    assert store.claim_key("k", holder("b")) == KeyHolder("a", "jobs.f", "celery")
    await anyio.sleep(max(0.0, handed + 0.6 - time.time()))
    assert store.claim_key("k", holder("b")) is None


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_one_key_claimed_at_once_from_many_threads_of_two_processes_has_one_holder(
    durable: Durable,
) -> None:
    a = await durable.open("a")
    b = a if durable.kind == "memory" else await durable.open("b")
    stores = [a, b] * 10

    def claim(index: int) -> KeyHolder | None:
        return stores[index].claim_key("k", holder(f"t{index}"))

    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(claim, range(20)))
    winners = [f"t{i}" for i, held in enumerate(found) if held is None]
    assert len(winners) == 1, found
    assert {held for held in found if held is not None} == {holder(winners[0])}


@pytest.mark.parametrize("durable", ["sqlite"], indirect=True)
async def test_a_claim_on_a_locked_file_fails_within_the_busy_timeout(durable: Durable) -> None:
    store = await durable.open("a", busy_timeout=0.2, probe_every=0.3)
    locker = sqlite3.connect(durable.at, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="could not check the task's idempotency key"):
            store.claim_key("k", holder("a"))
        assert 0.15 < time.monotonic() - started < 2.0
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):  # the breaker: at once, not after the timeout
            store.claim_key("k", holder("a"))
        assert time.monotonic() - started < 0.1
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await anyio.sleep(0.35)  # a probe is let through again
    assert store.claim_key("k", holder("a")) is None


async def test_a_claim_on_a_frozen_redis_fails_within_the_store_timeout(
    own_redis: OwnRedis,
) -> None:
    store = RedisStore(
        own_redis.url, owner="a", lease=60.0, capacity=100, retention=3600.0, timeout=0.3
    )
    await store.open()
    try:
        assert store.claim_key("k", holder("a")) is None
        own_redis.freeze()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="could not check the task's idempotency key"):
            store.claim_key("k", holder("b"))
        assert time.monotonic() - started < 3.0  # the socket timeout, and one reconnect
        own_redis.thaw()
        await anyio.sleep(1.1)  # the breaker's probe
        assert store.claim_key("k", holder("b")) == holder("a")
    finally:
        own_redis.thaw()
        await store.close()


async def test_a_reclaimed_requeue_task_takes_its_key_along(durable: Durable) -> None:
    # Run again by the process that reclaims it, it writes its row again: with its key,
    # so that the key outlives that row too (`Requeue.adopt` sets it from the orphan).
    dead = await durable.open("worker-1", lease=0.05)
    assert dead.claim_key("k", holder("r")) is None
    dead.put(record("r", requeue=True, payload=b"call", key="k"))
    await dead.flush()
    await sleep_until(durable.lease_ends())
    [orphan] = await (await durable.open("a")).reclaim()
    assert (orphan.info.id, orphan.requeued, orphan.key) == ("r", True, "k")


async def test_a_closed_store_refuses_claims(durable: Durable) -> None:
    store = await durable.open("a")
    await store.close()
    with pytest.raises(StoreUnavailable, match="not open"):
        store.claim_key("k", holder("a"))


async def test_a_key_row_of_unexpected_values_is_taken_over(durable: Durable) -> None:
    # Nothing read back is trusted: what this package never writes does not hold a key.
    store = await durable.open("a")
    assert store.claim_key("k", holder("a")) is None
    durable.set_key_field("k", "claimed_at", "not a time")
    assert store.claim_key("k", holder("b")) is None


def test_the_memory_store_keeps_at_most_its_capacity_of_keys() -> None:
    store = MemoryStore(3)
    for i in range(5):
        assert store.claim_key(f"k{i}", holder(f"t{i}")) is None
    assert len(store.keys) == 3
    assert store.claim_key("k4", holder("x")) == holder("t4")  # the newest are kept
    assert store.claim_key("k0", holder("x")) is None  # the oldest forgotten


@pytest.mark.parametrize("durable", ["sqlite"], indirect=True)
async def test_a_version_4_file_gains_the_keys_table_and_its_trigger_once(
    durable: Durable,
) -> None:
    with sqlite3.connect(durable.at) as conn:
        # As a store left it: in WAL mode. (Switching a file to WAL while another process
        # opens it may fail at once with "database is locked", busy timeout or not.)
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in (*V1_SCHEMA, *UPGRADES[1], *UPGRADES[2], *UPGRADES[3]):
            conn.execute(statement)
        conn.execute("UPDATE meta SET value = 4 WHERE key = 'schema_version'")
        conn.executemany(
            f"INSERT INTO tasks VALUES ({', '.join('?' * 24)})",
            [(*row, None, None, None, None, None, None) for row in V1_ROWS],
        )
    conn.close()
    stores: list[Any] = []

    async def open_one(owner: str) -> None:
        stores.append(await durable.open(owner, capacity=1))

    async with anyio.create_task_group() as group:  # two processes upgrading at once
        group.start_soon(open_one, "a")
        group.start_soon(open_one, "b")
    a, b = stores
    assert query(durable.at, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (SCHEMA_VERSION,)
    ]
    made = {name for (name,) in query(durable.at, "SELECT name FROM sqlite_master")}
    assert {"task_keys", "task_keys_settled", "tasks_key_kept"} <= made
    assert [info.id for info in await b.active()] == ["live"]  # a row of version 4, kept
    assert a.claim_key("k", holder("new")) is None
    task = keyed("new")
    a.put(task)
    await a.flush()
    assert b.claim_key("k", holder("other")) == holder("new")
    settle(a, task)
    await a.flush()
    a.put(record("later", TaskState.SUCCEEDED))  # pushes "new" out (capacity 1)
    await a.flush()
    assert await b.get("new") is None
    assert (durable.key_fields("k") or {}).get("settled_at") is not None  # the trigger
    assert b.claim_key("k", holder("other")) == holder("new")
