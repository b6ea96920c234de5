"""Timed-out thread tasks keep their slot until their thread returns (issue 15, finding 7):
a thread cannot be killed, so a lane that freed the slot at the timeout ran ever more
threads at once (194 OS threads with thread_workers=16)."""

from __future__ import annotations

import threading

import anyio
import pytest

from fastapi_offload import Offload, TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload.lanes.advisor import CpuAdvisor
from fastapi_offload.lanes.thread import ThreadLane

pytestmark = pytest.mark.anyio


class Gauge:
    """Counts the threads inside the lane's functions, and the most seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.release = threading.Event()

    def hold(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            self.release.wait(20)  # runs on past its task's timeout
        finally:
            with self.lock:
                self.now -= 1


async def test_timed_out_threads_count_against_the_lane_until_they_return() -> None:
    gauge = Gauge()
    async with Offload(thread_workers=2) as offload:
        handles = [
            await offload.options(lane="thread", timeout=0.3).submit(gauge.hold) for _ in range(6)
        ]
        with anyio.fail_after(10):
            while offload.stats().lanes["thread"].failed < 2:  # noqa: ASYNC110 - a counter
                await anyio.sleep(0.02)
        await anyio.sleep(0.6)  # the old lane started the other four meanwhile
        stats = offload.stats().lanes["thread"]
        assert gauge.most <= 2, f"{gauge.most} threads ran the lane's functions at once"
        # Each thread still inside `hold` belongs to a task that timed out (2, unless a
        # loaded machine took longer than the timeout to start a thread: that call is
        # dropped, never run, and frees its slot at once).
        assert stats.abandoned == gauge.now >= 1 and stats.running == 0
        assert stats.waiting + stats.failed == 6
        assert offload.stats().to_dict()["lanes"]["thread"]["abandoned"] == gauge.now
        gauge.release.set()  # the threads return: their slots go to the waiting tasks
        with anyio.fail_after(10):
            await offload.join()
        infos = [await offload.status(h.id) for h in handles]
        states = [info.state for info in infos]
        assert states.count(TaskState.FAILED) >= 2  # those that timed out
        assert states.count(TaskState.FAILED) + states.count(TaskState.SUCCEEDED) == 6
        assert all("holding its slot" in (i.error or "") for i in infos if i.error)
        # A returned thread is counted off on the loop, once it reports back: the tasks may
        # all have ended a moment before the last report of an abandoned thread arrives.
        with anyio.fail_after(5):
            while offload.stats().lanes["thread"].abandoned:  # noqa: ASYNC110 - a counter
                await anyio.sleep(0.01)
        assert gauge.most <= 2


async def test_a_thread_that_returns_in_time_keeps_no_slot() -> None:
    async with Offload(thread_workers=1) as offload:
        for _ in range(3):
            await offload.options(timeout=5).submit(threading.current_thread)
        with anyio.fail_after(10):
            await offload.join()
        stats = offload.stats().lanes["thread"]
        assert (stats.succeeded, stats.abandoned) == (3, 0)


async def test_a_call_given_up_before_its_thread_started_frees_its_slot() -> None:
    # A call whose wait was cancelled before a thread took it up is skipped: that call
    # never returns, so its slot must not wait for it.
    lane = ThreadLane(1, CpuAdvisor(), 0)
    ran = threading.Event()
    record = TaskRecord("t", "jobs.f", "thread", ran.set, (), {}, None, 0, 1.0)
    for _ in range(20):  # cancelled at once: before or just after a thread takes it up
        async with lane.limiter:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await lane.execute(record)
    with anyio.fail_after(5):
        while lane.abandoned:  # noqa: ASYNC110 - a counter
            await anyio.sleep(0.01)
        async with lane.limiter:  # the slot is free again
            pass
