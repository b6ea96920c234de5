"""Delayed tasks in a durable store (`durable`: a real SQLite file and a real Redis): the
rows (reclaimed scheduled, cancellable, left for later at a shutdown) and the runtime on
top of them (kept across a restart, cancelled from another process, refused when their
call cannot be saved). A real server killed with SIGKILL: test_delayed_durability.py."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from fastapi_offload import ConfigError, NotOffloadable, Offload, TaskState

from ..apps import delayed_jobs as jobs
from ..apps.delayed_jobs import stamps
from ..helpers import until_state as until
from .helpers import Durable, P, RedisDatabase, record, sleep_until

pytestmark = pytest.mark.anyio

KEY = "scheduled-tests-secret-key"


def store_url(durable: Durable) -> str:
    return durable.at if isinstance(durable, RedisDatabase) else f"sqlite:///{durable.at}"


def has_saved_call(durable: Durable, task_id: str) -> bool:
    if isinstance(durable, RedisDatabase):
        return bool(durable.client.hexists(f"{P}:task:{task_id}", "payload"))
    with sqlite3.connect(durable.at) as conn:
        [(payload,)] = conn.execute("SELECT payload FROM tasks WHERE id = ?", (task_id,))
    conn.close()
    return payload is not None


# -- the rows ---------------------------------------------------------------------------


async def test_a_scheduled_row_is_reclaimed_scheduled_whatever_its_requeue_flag(
    durable: Durable,
) -> None:
    due = time.time() + 3600
    dead = await durable.open("worker-1", lease=0.05)
    for task_id, requeue in (("once", False), ("again", True)):
        dead.put(record(task_id, TaskState.SCHEDULED, due_at=due, requeue=requeue, payload=b"call"))
    await dead.flush()
    await sleep_until(durable.lease_ends())
    a, b = await durable.open("a"), await durable.open("b")
    orphans = sorted(await a.reclaim(), key=lambda orphan: orphan.info.id)
    assert [(o.info.id, o.requeued, o.payload) for o in orphans] == [
        ("again", True, b"call"),
        ("once", True, b"call"),
    ]
    assert {(o.info.state, o.info.due_at) for o in orphans} == {(TaskState.SCHEDULED, due)}
    assert durable.owner_state("once") == ("a", "scheduled")
    assert durable.owned("a") == {"once", "again"} and durable.live_count() == 2
    assert await b.reclaim() == []  # a holds them now, under a fresh lease


async def test_a_scheduled_row_without_a_saved_call_is_interrupted(durable: Durable) -> None:
    dead = await durable.open("worker-1", lease=0.05)
    dead.put(record("s", TaskState.SCHEDULED, due_at=time.time() + 60))
    await dead.flush()
    await sleep_until(durable.lease_ends())
    [orphan] = await (await durable.open("a")).reclaim()
    assert (orphan.requeued, orphan.info.state) == (False, TaskState.INTERRUPTED)


async def test_a_scheduled_row_can_be_asked_to_cancel_by_another_process(
    durable: Durable,
) -> None:
    a, b = await durable.open("a"), await durable.open("b")
    a.put(record("s", TaskState.SCHEDULED, due_at=time.time() + 60, payload=b"call"))
    await a.flush()
    assert await b.request_cancel("s") is True
    assert await a.cancel_requests() == ["s"]


async def test_a_row_left_scheduled_at_close_is_reclaimed_when_its_owner_opens_again(
    durable: Durable,
) -> None:
    # `Offload` entered twice in one process keeps its owner id: the rows it left to the
    # store at its shutdown are its own, and no other owner's reclaim would take them.
    first = await durable.open("a")
    first.put(record("s", TaskState.SCHEDULED, due_at=time.time() + 60, payload=b"call"))
    await first.flush()
    await first.close()
    again = await durable.open("a")
    orphans = await again.reclaim()
    assert [(o.info.id, o.info.state, o.requeued) for o in orphans] == [
        ("s", TaskState.SCHEDULED, True)
    ]


# -- the runtime ------------------------------------------------------------------------


async def test_a_scheduled_task_stays_in_the_store_at_shutdown_and_the_next_start_runs_it(
    durable: Durable, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out, url = tmp_path / "out", store_url(durable)
    caplog.set_level(logging.INFO, "fastapi_offload")
    first = Offload(store=url, store_lease=0.5, secret_key=KEY, shutdown_timeout=30)
    async with first:
        handle = await first.options(delay=2).submit(jobs.stamp, str(out))
        stopping = time.monotonic()
    took = time.monotonic() - stopping
    assert took < 5, f"shutdown waited {took:.1f} s for a task not due"
    assert durable.owner_state(handle.id)[1] == "scheduled" and has_saved_call(durable, handle.id)
    [kept] = [r for r in caplog.records if "not due yet" in r.getMessage()]
    assert kept.levelno == logging.INFO and "1 scheduled task(s)" in kept.getMessage()
    assert "runs each when due" in kept.getMessage()

    second = Offload(store=url, store_lease=0.5, secret_key=KEY)
    async with second:
        # The first one's lease runs out, then the second one's upkeep takes the row.
        scheduled = await until(second, handle.id, {TaskState.SCHEDULED})
        done = await until(second, handle.id, {TaskState.SUCCEEDED, TaskState.FAILED})
    assert done.state is TaskState.SUCCEEDED, done
    assert scheduled.due_at is not None and done.due_at == scheduled.due_at
    [(ran_at, _)] = stamps(out)
    assert ran_at >= scheduled.due_at
    assert "is taken over from a process that stopped: it runs here when due" in caplog.text


async def test_a_scheduled_task_is_cancelled_from_another_process_sharing_the_store(
    durable: Durable, tmp_path: Path
) -> None:
    out, url = tmp_path / "out", store_url(durable)
    async with (
        Offload(store=url, secret_key=KEY) as owner,
        Offload(store=url, secret_key=KEY) as other,
    ):
        handle = await owner.options(delay=3).submit(jobs.stamp, str(out))
        seen = await other.status(handle.id)
        assert await other.cancel(handle.id) is True
        info = await until(other, handle.id, {TaskState.CANCELLED}, limit=5)
        await sleep_until(info.due_at or 0.0)
    assert seen.state is TaskState.SCHEDULED and seen.due_at is not None
    assert info.error == "cancelled by request" and info.started_at is None
    assert stamps(out) == []


@pytest.mark.parametrize("requeue", [False, True])
async def test_a_task_that_comes_due_keeps_its_saved_call_only_if_declared_requeue(
    durable: Durable, tmp_path: Path, requeue: bool
) -> None:
    # Once due, a task that must not run twice starts only when the store says it no
    # longer keeps its call: a process that dies now leaves it interrupted, not rerun.
    out, release = tmp_path / "out", tmp_path / "release"
    func = jobs.stamp_then_wait_requeue if requeue else jobs.stamp_then_wait
    async with Offload(store=store_url(durable), secret_key=KEY) as offload:
        handle = await offload.options(delay=0.3).submit(func, str(out), str(release))
        assert has_saved_call(durable, handle.id)
        await until(offload, handle.id, {TaskState.RUNNING})
        for _ in range(1000):  # it stamps first thing: it has started
            if stamps(out):
                break
            await anyio.sleep(0.01)
        saved = has_saved_call(durable, handle.id)  # read while it runs
        release.touch()
        await offload.join()
    assert saved is requeue


async def test_a_delayed_call_that_cannot_be_saved_is_refused_in_the_request(
    durable: Durable, tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    async with Offload(store=store_url(durable), secret_key=KEY) as offload:
        with pytest.raises(ConfigError) as undeclared:
            await offload.options(delay=5).submit(jobs.undeclared, out)
        with pytest.raises(NotOffloadable) as unpicklable:
            await offload.options(delay=5).submit(jobs.stamp, lambda: out)  # type: ignore[arg-type]
        await offload.submit(jobs.undeclared, out)  # not delayed: nothing to save
        await offload.join()
    assert str(undeclared.value) == (
        "tests.apps.delayed_jobs:undeclared is delayed (delay=/at=) with a durable store: the "
        "store keeps its call until it is due, and the process that runs it then (this one "
        "after a restart, or another sharing the store) runs only functions declared where "
        "they are defined: decorate undeclared with @task (or cpu_bound/io_bound), in a "
        "module every process imports"
    )
    assert "is delayed (delay=/at=), so its call is kept in the task store until it is due" in (
        str(unpicklable.value)
    )
    assert "cannot be pickled" in str(unpicklable.value)
    assert len(stamps(out)) == 1


@pytest.mark.redis
async def test_a_delay_on_redis_without_a_secret_key_is_refused_naming_it(
    redis_base_url: str, tmp_path: Path
) -> None:
    settings: dict[str, Any] = {"store": f"{redis_base_url}/14"}
    async with Offload(**settings) as offload:
        with pytest.raises(ConfigError) as caught:
            await offload.options(delay=5).submit(jobs.stamp, str(tmp_path / "out"))
        assert offload.stats().lanes["thread"].scheduled == 0
    assert str(caught.value).startswith(
        "tests.apps.delayed_jobs:stamp is delayed (delay=/at=), so its call is kept in the "
        "task store until it is due: here the Redis store, where anyone who can write to "
        "that Redis could plant a call, so saved calls are signed: set OFFLOAD_SECRET_KEY "
        "(or Offload(secret_key=...))"
    )
