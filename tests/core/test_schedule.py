"""Delayed tasks (`core/schedule.py`) with the memory store: `scheduled` until due, then
`pending` and run as any task; `max_pending` counts only due tasks; cancel by id while
scheduled; `after=` with a delay; shutdown. With a durable store: tests/stores/test_scheduled.py."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest
from fastapi import FastAPI

from fastapi_offload import ConfigError, Offload, OffloadTasks, QueueFull, TaskState
from fastapi_offload._config import OffloadConfig
from fastapi_offload._record import TaskRecord
from fastapi_offload._settings import TaskSettings
from fastapi_offload.core.runtime import Runtime
from fastapi_offload.core.schedule import NOT_DUE, put_off

from ..apps import progress_jobs
from ..apps.delayed_jobs import stamp, stamp_async, stamps
from ..helpers import serve
from ..helpers import until_state as until

pytestmark = pytest.mark.anyio

BY_REQUEST = "cancelled by request"


class Transitions:
    """The ledger's events of one task, with the state each left it in."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def observe(self, event: str, record: TaskRecord) -> None:
        self.seen.append((event, record.state.value))


async def test_a_delayed_task_is_scheduled_then_pending_then_runs_when_due(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    transitions = Transitions()
    async with Offload() as offload:
        offload._runtime.ledger.add_observer(transitions)
        before = time.time()
        handle = await offload.options(delay=0.5).submit(stamp, str(out))
        info = await offload.status(handle.id)
        lane = offload.stats().lanes["thread"]
        done = await until(offload, handle.id, {TaskState.SUCCEEDED})
    assert info.state is TaskState.SCHEDULED, info
    assert info.due_at is not None and before + 0.5 <= info.due_at <= time.time() + 0.5
    assert info.to_dict()["due_at"] == info.due_at and info.to_dict()["state"] == "scheduled"
    assert info.attempts == 0 and info.started_at is None
    assert (lane.scheduled, lane.waiting) == (1, 0)  # no slot, no bound while scheduled
    [(ran_at, _)] = stamps(out)
    assert ran_at >= info.due_at, "it ran before it was due"
    assert ran_at - info.due_at < 5, f"{ran_at - info.due_at:.2f} s late"  # about a second
    assert done.due_at == info.due_at and done.started_at is not None
    assert done.started_at >= info.due_at
    assert transitions.seen == [
        ("admitted", "scheduled"),
        ("due", "pending"),
        ("started", "running"),
        ("finished", "succeeded"),
    ]
    assert offload.stats().lanes["thread"].scheduled == 0


async def test_at_an_aware_datetime_and_a_time_already_past(tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with Offload() as offload:
        at = datetime.now(timezone.utc) + timedelta(seconds=0.4)
        later = await offload.options(at=at).submit(stamp_async, str(out))
        assert (await offload.status(later.id)).due_at == at.timestamp()
        # A moment already past (or delay=0) starts at once: never scheduled.
        past = await offload.options(at=at - timedelta(hours=1)).submit(stamp, str(out))
        now = await offload.options(delay=0).submit(stamp, str(out))
        for handle in (past, now):
            info = await offload.status(handle.id)
            assert info.state is not TaskState.SCHEDULED and info.due_at is None, info
        await offload.join()
        done = await offload.status(later.id)
    assert done.state is TaskState.SUCCEEDED and done.started_at is not None
    assert done.started_at >= at.timestamp()
    assert len(stamps(out)) == 3


async def test_max_pending_counts_only_tasks_that_are_due(tmp_path: Path) -> None:
    release, out = tmp_path / "release", tmp_path / "out"
    async with Offload(thread_workers=1, max_pending=2) as offload:
        blocker = await offload.submit(progress_jobs.wait_for, str(release))
        await until(offload, blocker.id, {TaskState.RUNNING})
        # Past the bound, and all accepted: none is due.
        later = [await offload.options(delay=60).submit(stamp, str(out)) for _ in range(5)]
        queued = [await offload.options(lane="thread").submit(stamp, str(out)) for _ in range(2)]
        with pytest.raises(QueueFull, match="max_pending=2"):
            await offload.submit(stamp, str(out))  # the two waiting ones fill the lane
        lane = offload.stats().lanes["thread"]
        for handle in later:
            assert await offload.cancel(handle.id) is True
        release.touch()
        await offload.join()
    assert (lane.scheduled, lane.waiting, lane.running) == (5, 2, 1)
    assert len(stamps(out)) == len(queued)


async def test_a_task_that_comes_due_is_counted_and_never_refused(tmp_path: Path) -> None:
    release, out = tmp_path / "release", tmp_path / "out"
    async with Offload(thread_workers=1, max_pending=1) as offload:
        blocker = await offload.submit(progress_jobs.wait_for, str(release))
        await until(offload, blocker.id, {TaskState.RUNNING})
        handles = [await offload.options(delay=0.3).submit(stamp, str(out)) for _ in range(3)]
        deadline = time.monotonic() + 10
        while offload.stats().lanes["thread"].waiting < 3:  # all due: past max_pending
            assert time.monotonic() < deadline, offload.stats().lanes["thread"]
            await anyio.sleep(0.02)
        assert [(await offload.status(h.id)).state for h in handles] == [TaskState.PENDING] * 3
        with pytest.raises(QueueFull):  # the bound still holds for new tasks
            await offload.submit(stamp, str(out))
        release.touch()
        await offload.join()
        states = {(await offload.status(h.id)).state for h in handles}
    assert states == {TaskState.SUCCEEDED} and len(stamps(out)) == 3


async def test_a_scheduled_task_cancelled_by_id_never_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with Offload() as offload:
        handle = await offload.options(delay=0.5).submit(stamp, str(out))
        assert await offload.cancel(handle.id) is True
        info = await until(offload, handle.id, {TaskState.CANCELLED}, limit=2)
        await anyio.sleep(0.8)  # past its due time
        assert await offload.cancel(handle.id) is False  # ended
    assert info.error == BY_REQUEST and info.started_at is None and info.attempts == 0
    assert info.due_at is not None
    assert stamps(out) == []
    lane = offload.stats().lanes["thread"]
    assert (lane.cancelled, lane.scheduled, lane.waiting) == (1, 0, 0)


async def test_the_status_router_shows_a_scheduled_task_and_cancels_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    offload = Offload()
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router(cancel=True, public=True))

    @app.post("/reminders", status_code=202)
    async def remind(tasks: OffloadTasks, minutes: float) -> dict[str, str]:
        handle = tasks.options(delay=minutes * 60).add_task(stamp, str(out))
        return {"id": handle.id}

    async with serve(app, offload) as client:
        task_id = (await client.post("/reminders", params={"minutes": 10})).json()["id"]
        shown = (await client.get(f"/tasks/{task_id}")).json()
        cancelled = await client.delete(f"/tasks/{task_id}")
        after = (await client.get(f"/tasks/{task_id}")).json()
    assert shown["state"] == "scheduled" and shown["due_at"] > time.time() + 500
    assert cancelled.status_code == 202
    assert after["state"] == "cancelled" and after["error"] == BY_REQUEST
    assert stamps(out) == []


async def test_after_and_delay_both_hold(tmp_path: Path) -> None:
    release, out = tmp_path / "release", tmp_path / "out"
    async with Offload() as offload:
        # Due first: the earlier task ended long before, and it still waits its delay.
        first = await offload.options(lane="thread").submit(stamp, str(tmp_path / "first"))
        await until(offload, first.id, {TaskState.SUCCEEDED})
        later = await offload.options(delay=0.5, after=first).submit(stamp, str(out))
        # ... then the earlier task: due, and pending until the task it follows ends.
        blocker = await offload.submit(progress_jobs.wait_for, str(release))
        blocked = await offload.options(delay=0.2, after=blocker).submit(stamp, str(out))
        waiting = await until(offload, blocked.id, {TaskState.PENDING}, limit=5)
        assert (await offload.status(blocked.id)).state is TaskState.PENDING
        release.touch()
        await offload.join()
        done = [await offload.status(h.id) for h in (later, blocked)]
    assert [info.state for info in done] == [TaskState.SUCCEEDED] * 2
    assert done[0].started_at is not None and done[0].due_at is not None
    assert done[0].started_at >= done[0].due_at
    assert waiting.due_at is not None and waiting.started_at is None


async def test_at_shutdown_the_memory_store_cancels_scheduled_tasks_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    caplog.set_level(logging.INFO, "fastapi_offload")
    offload = Offload(shutdown_timeout=30)
    async with offload:
        handles = [await offload.options(delay=60).submit(stamp, str(out)) for _ in range(2)]
        stopping = time.monotonic()
    took = time.monotonic() - stopping
    infos = [await offload.status(h.id) for h in handles]
    assert took < 5, f"shutdown waited {took:.1f} s for tasks not due"
    assert {(info.state, info.error) for info in infos} == {(TaskState.CANCELLED, NOT_DUE)}
    [warning] = [r for r in caplog.records if "not due yet" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "2 scheduled task(s) not due yet are cancelled" in warning.getMessage()
    assert "a durable store" in warning.getMessage()
    assert [r for r in caplog.records if NOT_DUE in r.getMessage()] == []  # one line in all
    assert stamps(out) == []


async def test_a_scheduled_task_its_request_starts_after_the_shutdown_began_never_runs(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    async with Offload() as offload:
        runtime = offload._runtime
        record = runtime.admit(stamp, (str(out),), {}, TaskSettings(delay=0.2))
        assert isinstance(record, TaskRecord)  # a handle only for a key some task holds
        assert put_off(runtime.ledger) == 1  # the first step of the shutdown
        runtime.start(record)  # its request's start comes after it
        await anyio.sleep(0.5)  # past its due time
        info = await offload.status(record.id)
    assert (info.state, info.error) == (TaskState.CANCELLED, NOT_DUE)
    assert stamps(out) == []


async def test_the_default_runtime_refuses_a_delay() -> None:
    # Without a lifespan a request runs its tasks inside itself: it would stay open.
    runtime = Runtime(OffloadConfig.resolve({}), None)
    runtime.attach()
    with pytest.raises(ConfigError, match=r"delay= and at= need the Offload lifespan"):
        runtime.admit(stamp, ("/dev/null",), {}, TaskSettings(delay=5))
    assert runtime.ledger.active == 0
