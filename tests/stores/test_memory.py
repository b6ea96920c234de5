"""`MemoryStore`: live tasks always kept, finished ones bounded."""

from __future__ import annotations

import pytest

from fastapi_offload._models import TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio


def record(task_id: str, state: TaskState = TaskState.PENDING) -> TaskRecord:
    return TaskRecord(task_id, "jobs.f", "thread", print, (), {}, None, 0, 1.0, state=state)


async def test_a_status_is_a_snapshot_of_the_last_put_never_the_record() -> None:
    # The ledger is the one registry of live records: the store keeps what each `put`
    # (a transition, under the ledger's lock) said, so its fields agree with each other.
    store = MemoryStore(10)
    live = record("a")
    store.put(live)
    live.state, live.attempts = TaskState.RUNNING, 1  # changed, not put yet
    assert (info := await store.get("a")) is not None
    assert (info.state, info.attempts) == (TaskState.PENDING, 0)
    store.put(live)
    assert (info := await store.get("a")) is not None
    assert (info.state, info.attempts) == (TaskState.RUNNING, 1)
    assert [i.id for i in await store.active()] == ["a"]
    live.state = TaskState.SUCCEEDED
    store.put(live)
    live.attempts = 99  # after the end, the record no longer shows through
    assert (info := await store.get("a")) is not None and info.attempts == 1
    assert await store.active() == []


async def test_finished_statuses_are_bounded_oldest_first_and_live_ones_are_kept() -> None:
    store = MemoryStore(3)
    store.put(record("live"))
    for i in range(5):
        store.put(record(f"done{i}", TaskState.FAILED))
    assert len(store) == 4
    assert await store.get("done0") is None and await store.get("done1") is None
    assert await store.get("done4") is not None
    assert [info.id for info in await store.active()] == ["live"]


async def test_a_handed_off_record_is_kept_like_a_finished_one() -> None:
    store = MemoryStore(1)
    remote = record("r")
    remote.lane = "celery"
    remote.handed_off = True
    store.put(remote)
    assert await store.active() == []
    assert (info := await store.get("r")) is not None and info.lane == "celery"
    store.put(record("s", TaskState.SUCCEEDED))
    assert await store.get("r") is None  # bounded like the rest


async def test_evict_forgets_live_and_finished_records() -> None:
    store = MemoryStore(10)
    store.put(record("a"))
    store.put(record("b", TaskState.CANCELLED))
    store.evict("a")
    store.evict("b")
    store.evict("never")
    assert len(store) == 0 and await store.get("a") is None and await store.get("b") is None
