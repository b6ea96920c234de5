"""Kept results, progress and cancel requests, the same on each durable store: a real
SQLite file and a real Redis, shared by stores of different owners (processes)."""

from __future__ import annotations

import time

import anyio
import pytest

from fastapi_offload._models import TaskState
from fastapi_offload._results import encode

from .helpers import Durable, OpenStore, record

pytestmark = pytest.mark.anyio

NESTED = {"naïve café": ["日本語", {"depth": [1, 2.5, None, True, {"emoji": "🦀"}]}], "n": -3}


async def outlive_leases(lease: float) -> None:
    """A lease counts from its commit, which the flush before this call awaited."""
    await anyio.sleep(lease + 0.05)


@pytest.fixture
def open_store(durable: Durable) -> OpenStore:
    return durable.open


async def test_a_kept_result_and_the_progress_are_read_back_by_another_owner(
    open_store: OpenStore,
) -> None:
    a, b = await open_store("a"), await open_store("b")
    text, why = encode(NESTED, 1 << 20)
    assert text is not None and why is None
    done = record("done", TaskState.SUCCEEDED, result=text, progress=1.0, progress_message="fin ✓")
    a.put(done)
    a.put(record("quiet", TaskState.SUCCEEDED))
    a.put(record("live", TaskState.RUNNING, progress=0.25, progress_message="étape 1/4"))
    await a.flush()
    assert (info := await b.get("done")) is not None and info == done.info()
    assert info.result == NESTED and info.progress == 1.0 and info.progress_message == "fin ✓"
    assert (info := await b.get("quiet")) is not None
    assert (info.result, info.progress, info.progress_message) == (None, None, None)
    assert (info := await b.get("live")) is not None and info.result is None
    assert (info.progress, info.progress_message) == (0.25, "étape 1/4")
    [info] = await b.active()
    assert (info.id, info.progress, info.progress_message) == ("live", 0.25, "étape 1/4")


async def test_a_progress_report_is_written_without_a_change_of_state(
    open_store: OpenStore,
) -> None:
    a, b = await open_store("a"), await open_store("b")
    task = record("x", TaskState.RUNNING, progress=0.1)
    a.put(task)
    await a.flush()
    for step in range(2, 6):  # as the ledger puts a report, a worker thread's among them
        task.progress, task.progress_message = step / 10, f"step {step}"
        await anyio.to_thread.run_sync(a.put, task)
    await a.flush()
    assert (info := await b.get("x")) is not None and info.state is TaskState.RUNNING
    assert (info.progress, info.progress_message) == (0.5, "step 5")


async def test_a_cancel_request_reaches_its_owner_once_and_no_other_owner(
    open_store: OpenStore,
) -> None:
    a, b, c = await open_store("a"), await open_store("b"), await open_store("c")
    a.put(record("x", TaskState.RUNNING))
    a.put(record("y"))
    c.put(record("z"))
    await a.flush()
    await c.flush()
    assert await b.request_cancel("x") is True
    assert await b.cancel_requests() == [] and await c.cancel_requests() == []
    assert await a.cancel_requests() == ["x"]
    assert await a.cancel_requests() == []  # once
    assert await c.request_cancel("x") is True  # asked again: already told
    assert await a.cancel_requests() == []
    assert await c.request_cancel("y") is True and await a.request_cancel("z") is True
    assert await a.cancel_requests() == ["y"] and await c.cancel_requests() == ["z"]


async def test_request_cancel_is_false_for_unknown_finished_and_handed_off_tasks(
    open_store: OpenStore,
) -> None:
    a, b = await open_store("a"), await open_store("b")
    a.put(record("done", TaskState.SUCCEEDED))
    a.put(record("failed", TaskState.FAILED, error="ValueError()"))
    a.put(record("remote", handed_off=True))  # pending at the broker: not ours to cancel
    a.put(record("live"))
    await a.flush()
    for task_id in ("never", "done", "failed", "remote"):
        assert await b.request_cancel(task_id) is False, task_id
    assert await a.cancel_requests() == []
    assert await b.request_cancel("live") is True  # the same store does say yes


async def test_the_owners_later_writes_keep_a_cancel_request_it_has_not_read(
    open_store: OpenStore,
) -> None:
    a, b = await open_store("a"), await open_store("b")
    task = record("x", TaskState.RUNNING)
    a.put(task)
    await a.flush()
    assert await b.request_cancel("x") is True
    task.progress = 0.5
    a.put(task)  # a progress report
    task.state, task.error = TaskState.PENDING, "OSError()"
    a.put(task)  # a retry: still live
    await a.flush()
    await a.renew()
    assert await a.cancel_requests() == ["x"]


async def test_a_cancel_request_follows_a_requeued_task_to_its_new_owner(
    open_store: OpenStore,
) -> None:
    dead = await open_store("worker-1", lease=0.2)
    for task_id in ("r", "q"):
        dead.put(record(task_id, TaskState.RUNNING, requeue=True, payload=b"pickled call"))
    await dead.flush()
    asker = await open_store("asker")
    assert await asker.request_cancel("r") is True
    assert await dead.cancel_requests() == ["r"]  # read, and then the process stalled
    await outlive_leases(0.2)
    assert await asker.request_cancel("q") is True  # its owner is gone: kept for the reclaim
    heir = await open_store("heir")
    orphans = await heir.reclaim()
    assert sorted((o.info.id, o.requeued) for o in orphans) == [("q", True), ("r", True)]
    assert await heir.cancel_requests() == []  # not adopted yet: told once they run here
    for orphan in orphans:  # as the ledger adopts them
        heir.put(record(orphan.info.id, requeue=True, payload=orphan.payload))
    assert sorted(await heir.cancel_requests()) == ["q", "r"]
    # The stalled process still holds both as running: it is not told of q.
    assert await dead.cancel_requests() == [] and await asker.cancel_requests() == []


async def test_an_interrupted_task_is_no_longer_cancellable(open_store: OpenStore) -> None:
    dead = await open_store("worker-1", lease=0.2)
    dead.put(record("x", TaskState.RUNNING))
    await dead.flush()
    heir = await open_store("heir")
    assert await heir.request_cancel("x") is True
    await outlive_leases(0.2)
    [orphan] = await heir.reclaim()
    assert orphan.info.state is TaskState.INTERRUPTED
    assert await heir.request_cancel("x") is False
    assert await heir.cancel_requests() == [] and await dead.cancel_requests() == []


async def test_a_cancel_request_racing_the_end_of_the_task_is_harmless(
    open_store: OpenStore,
) -> None:
    a, b = await open_store("a"), await open_store("b")
    early, late = record("early", TaskState.RUNNING), record("late", TaskState.RUNNING)
    a.put(early)
    a.put(late)
    await a.flush()
    early.state, early.finished_at = TaskState.SUCCEEDED, time.time()
    a.put(early)
    await a.flush()
    assert await b.request_cancel("early") is False  # its end was committed first
    assert await b.request_cancel("late") is True  # ... and here the request was
    text, _ = encode([1, 2], 100)
    late.state, late.finished_at, late.result = TaskState.SUCCEEDED, time.time(), text
    a.put(late)  # ended here; the end is not committed yet
    assert await a.cancel_requests() == []  # nothing left to cancel
    await a.flush()
    assert await a.cancel_requests() == [] and await b.request_cancel("late") is False
    assert (info := await b.get("late")) is not None
    assert (info.state, info.result, info.error) == (TaskState.SUCCEEDED, [1, 2], None)
    a.put(record("next", TaskState.RUNNING))  # a later live task is not told of "late"
    await a.flush()
    assert await a.cancel_requests() == []
