"""The thread lane's own worker threads: calls go out through a queue and come back to
the loop in batches (issue 17). Everything the lane promised on anyio's threads holds."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from fastapi import Depends

from fastapi_offload import Offload, TaskState, cancelled, report_progress
from fastapi_offload._record import TaskRecord
from fastapi_offload.lanes import thread as thread_module
from fastapi_offload.lanes import thread_workers
from fastapi_offload.lanes.advisor import CpuAdvisor, measured
from fastapi_offload.lanes.thread import ThreadLane
from fastapi_offload.lanes.thread_slots import ThreadSlots

pytestmark = pytest.mark.anyio

CALLER = contextvars.ContextVar[str]("CALLER")


def record_of(func: Any, *args: Any, keep: bool = False, name: str = "jobs.f") -> TaskRecord:
    record = TaskRecord(f"{id(func):x}", name, "thread", func, args, {}, None, 0, 1.0)
    record.keep_result = keep
    return record


async def until(check: Callable[[], Awaitable[bool]], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, f"not reached within {limit} s"
        await anyio.sleep(0.02)


def square(n: int) -> int:
    return n * n


def thread_name() -> str:
    return threading.current_thread().name


async def test_many_tasks_each_get_their_own_result() -> None:
    # Outcomes come back in batches: each must reach its own task, none twice.
    async with Offload(thread_workers=4, keep_result=True, max_pending=5000) as offload:
        handles = [await offload.options(lane="thread").submit(square, n) for n in range(3000)]
        with anyio.fail_after(30):
            await offload.join()
        infos = [await offload.status(h.id) for h in handles]
        stats = offload.stats().lanes["thread"]
    assert [info.result for info in infos] == [n * n for n in range(3000)]
    assert (stats.succeeded, stats.failed, stats.running, stats.waiting) == (3000, 0, 0, 0)


async def test_calls_run_on_our_own_threads_at_most_capacity_of_them() -> None:
    lane = ThreadLane(3, CpuAdvisor(), 1000)
    names: list[str] = []

    async def one() -> None:
        async with lane.limiter:
            kept = await lane.execute(record_of(thread_name, keep=True))
        assert kept is not None and kept[0] is not None
        names.append(kept[0])

    async with anyio.create_task_group() as group:
        for _ in range(200):
            group.start_soon(one)
    assert all(name.startswith('"fastapi-offload thread lane') for name in names)
    assert 1 <= len(set(names)) <= 3 and lane.threads <= 3
    assert threading.current_thread().name not in {name.strip('"') for name in names}


def boom(message: str) -> None:
    raise ValueError(message)


async def test_an_exception_reaches_the_attempt_with_its_traceback() -> None:
    lane = ThreadLane(2, CpuAdvisor(), 0)
    async with lane.limiter:
        with pytest.raises(ValueError, match="no luck") as caught:
            await lane.execute(record_of(boom, "no luck"))
    # The thread's frames are kept: the log and the status show where it failed.
    assert "boom" in [entry.name for entry in caught.traceback]


async def test_failures_and_successes_in_one_batch_stay_apart() -> None:
    async with Offload(thread_workers=4, max_pending=1000) as offload:
        good = [await offload.options(lane="thread").submit(square, n) for n in range(100)]
        bad = [await offload.options(lane="thread").submit(boom, f"n{n}") for n in range(100)]
        with anyio.fail_after(20):
            await offload.join()
        good_states = {(await offload.status(h.id)).state for h in good}
        bad_infos = [await offload.status(h.id) for h in bad]
    assert good_states == {TaskState.SUCCEEDED}
    assert all(i.state is TaskState.FAILED for i in bad_infos)
    assert all(f"n{n}" in (i.error or "") for n, i in enumerate(bad_infos))


def stop_iteration() -> None:
    raise StopIteration


async def test_stop_iteration_fails_the_task_instead_of_breaking_the_loop() -> None:
    lane = ThreadLane(1, CpuAdvisor(), 0)
    async with lane.limiter:
        with pytest.raises(RuntimeError, match="StopIteration") as caught:
            await lane.execute(record_of(stop_iteration))
    assert isinstance(caught.value.__cause__, StopIteration)


async def test_a_timeout_abandons_the_thread_which_keeps_its_slot() -> None:
    release = threading.Event()
    async with Offload(thread_workers=1) as offload:
        started = time.monotonic()
        handle = await offload.options(lane="thread", timeout=0.2).submit(release.wait, 20)

        async def failed() -> bool:
            return (await offload.status(handle.id)).state is TaskState.FAILED

        await until(failed)
        assert time.monotonic() - started < 10  # did not wait for the thread
        assert offload.stats().lanes["thread"].abandoned == 1
        # The slot is the thread's: the next task waits for it.
        after = await offload.options(lane="thread").submit(square, 3)
        await anyio.sleep(0.2)
        assert (await offload.status(after.id)).state is TaskState.PENDING
        release.set()
        with anyio.fail_after(10):
            await offload.join()
        assert (await offload.status(after.id)).state is TaskState.SUCCEEDED
        assert offload.stats().lanes["thread"].abandoned == 0


LOG: list[str] = []


def session() -> Iterator[str]:
    LOG.append("open")
    yield "db"
    LOG.append("close")


def uses_session(seconds: float, db: str = Depends(session)) -> None:
    time.sleep(seconds)
    LOG.append(f"done with {db}")


async def test_with_dependencies_a_timeout_waits_for_the_thread() -> None:
    LOG.clear()
    async with Offload() as offload:
        handle = await offload.options(lane="thread", timeout=0.1).submit(uses_session, 0.4)
        with anyio.fail_after(10):
            await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.FAILED and "timeout" in (info.error or "")
    assert LOG == ["open", "done with db", "close"]


def read_context() -> str:
    return CALLER.get("unset")


async def test_the_call_runs_in_a_copy_of_the_callers_context() -> None:
    lane = ThreadLane(2, CpuAdvisor(), 1000)
    CALLER.set("the caller's")
    async with lane.limiter:
        kept = await lane.execute(record_of(read_context, keep=True))
    assert kept is not None and kept[0] == '"the caller\'s"'


def set_context() -> None:
    CALLER.set("the thread's")


async def test_a_change_in_the_thread_stays_in_the_thread() -> None:
    lane = ThreadLane(1, CpuAdvisor(), 0)
    CALLER.set("mine")
    async with lane.limiter:
        await lane.execute(record_of(set_context))
    assert CALLER.get() == "mine"


def progress_then_wait_for_cancel(release: threading.Event) -> str:
    report_progress(0.5, "half")
    while not cancelled():
        if release.wait(0.01):
            return "released"
    return "stopped"


async def test_report_progress_and_cancelled_work_in_the_thread() -> None:
    release = threading.Event()
    try:
        async with Offload() as offload:
            handle = await offload.options(lane="thread").submit(
                progress_then_wait_for_cancel, release
            )

            async def reported() -> bool:
                return (await offload.status(handle.id)).progress is not None

            await until(reported)
            assert (await offload.status(handle.id)).progress_message == "half"
            assert await offload.cancel(handle.id)
            with anyio.fail_after(10):
                await offload.join()
            assert (await offload.status(handle.id)).state is TaskState.CANCELLED
    finally:
        release.set()


async def test_shutdown_does_not_wait_for_a_thread_that_never_returns() -> None:
    release = threading.Event()
    started = time.monotonic()
    try:
        async with Offload(shutdown_timeout=0.5) as offload:
            handle = await offload.options(lane="thread").submit(release.wait, 30)

            async def running() -> bool:
                return (await offload.status(handle.id)).state is TaskState.RUNNING

            await until(running)
        assert time.monotonic() - started < 10
        # Its thread is a daemon: it cannot keep the process from exiting.
        lane_threads = [t for t in threading.enumerate() if "thread lane" in t.name]
        assert lane_threads and all(t.daemon for t in lane_threads)
    finally:
        release.set()


async def test_idle_threads_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thread_workers, "IDLE", 0.05)
    lane = ThreadLane(4, CpuAdvisor(), 0)

    async def one() -> None:
        async with lane.limiter:
            await lane.execute(record_of(time.sleep, 0.05))

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(one)
    assert 1 <= lane.threads <= 4

    async def none_left() -> bool:
        return lane.threads == 0

    await until(none_left)
    async with lane.limiter:  # a later call starts a thread again
        await lane.execute(record_of(square, 2))
    assert lane.threads == 1


def run_in_a_new_loop(lane: ThreadLane) -> int:
    async def main() -> int:
        async with lane.limiter:
            kept = await lane.execute(record_of(square, 7, keep=True))
        assert kept is not None and kept[0] is not None
        return int(kept[0])

    return asyncio.run(main())


async def test_a_lane_serves_one_event_loop_after_another() -> None:
    lane = ThreadLane(2, CpuAdvisor(), 100)
    # Each in a thread of its own, with an event loop of its own.
    assert await anyio.to_thread.run_sync(run_in_a_new_loop, lane) == 49
    assert await anyio.to_thread.run_sync(run_in_a_new_loop, lane) == 49


async def test_a_slot_waiter_cancelled_while_waiting_takes_no_slot() -> None:
    slots = ThreadSlots(1)
    await slots.__aenter__()
    with anyio.move_on_after(0.05):
        async with slots:
            raise AssertionError("the only slot is taken")
    assert slots.taken == 1
    await slots.__aexit__(None, None, None)
    assert slots.taken == 0
    async with slots:  # free again, without waiting for the cancelled waiter
        assert slots.taken == 1


async def test_slots_are_handed_over_in_order() -> None:
    slots = ThreadSlots(1)
    order: list[int] = []
    await slots.__aenter__()

    async def waiter(n: int) -> None:
        async with slots:
            order.append(n)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        for n in range(5):
            group.start_soon(waiter, n)
            await anyio.lowlevel.checkpoint()  # each one queued before the next
        await slots.__aexit__(None, None, None)
    assert order == [0, 1, 2, 3, 4] and slots.taken == 0


def spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def test_the_cpu_advisor_measures_calls_in_the_worker_threads() -> None:
    advisor = CpuAdvisor()
    lane = ThreadLane(2, advisor, 0)
    async with lane.limiter:
        await lane.execute(record_of(spin, 0.2, name="jobs.spin"))
    assert advisor.flagged == {"jobs.spin"}
    finding = advisor.findings["jobs.spin"]
    assert finding.cpu >= 0.2 and finding.wall > 0


async def test_a_declared_callable_is_not_measured() -> None:
    advisor = CpuAdvisor()
    lane = ThreadLane(2, advisor, 0)
    record = record_of(spin, 0.2, name="jobs.spin")
    record.declared = True  # @io_bound, @cpu_bound or @task: the advice is silenced
    async with lane.limiter:
        await lane.execute(record)
    assert advisor.flagged == set()


def test_measured_reads_the_run_delay_again_only_for_calls_that_used_the_cpu() -> None:
    reads: list[float] = []

    def run_delay() -> float:
        reads.append(time.monotonic())
        return 0.0

    seen: list[tuple[float, float]] = []
    measured(square, (3,), {}, lambda wall, cpu: seen.append((wall, cpu)), run_delay, 0.05)
    assert len(reads) == 1 and len(seen) == 1  # short: the wall time is not corrected
    measured(spin, (0.06,), {}, lambda wall, cpu: seen.append((wall, cpu)), run_delay, 0.05)
    assert len(reads) == 3 and seen[1][1] >= 0.06


async def test_a_thread_that_cannot_start_fails_its_attempt_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lane = ThreadLane(2, CpuAdvisor(), 100)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", refuse)
        async with lane.limiter:
            with pytest.raises(RuntimeError, match="can't start new thread"):
                await lane.execute(record_of(square, 2, keep=True))
    assert lane.threads == 0 and lane.limiter.taken == 0
    async with lane.limiter:  # the next call gets a thread, and skips the dropped call
        kept = await lane.execute(record_of(square, 5, keep=True))
    assert kept == ("25", None) and 1 <= lane.threads <= 2


async def test_many_attempts_on_few_slots_leave_every_slot_free() -> None:
    lane = ThreadLane(2, CpuAdvisor(), 0)

    async def one(n: int) -> None:
        async with lane.limiter:
            if n % 3 == 0:
                with anyio.move_on_after(0):  # gives up at once: before or after its thread
                    await lane.execute(record_of(square, n))
            else:
                await lane.execute(record_of(square, n))

    async with anyio.create_task_group() as group:
        for n in range(300):
            group.start_soon(one, n)

    async def all_free() -> bool:
        return lane.limiter.taken == 0 and lane.abandoned == 0

    await until(all_free)


async def test_blocking_calls_each_get_a_thread_up_to_capacity() -> None:
    # Short calls share the first thread that is awake; calls that block must not wait
    # for each other: all 6 must be inside the barrier at once for any to pass it.
    lane = ThreadLane(6, CpuAdvisor(), 0)
    barrier = threading.Barrier(6, timeout=20)

    async def one() -> None:
        async with lane.limiter:
            await lane.execute(record_of(barrier.wait))

    async with anyio.create_task_group() as group:
        for _ in range(6):
            group.start_soon(one)
    assert lane.threads == 6 and not barrier.broken


class _Upload:
    pass


def _echo(value: object) -> object:
    return value


async def test_a_worker_lets_go_of_the_arguments_before_the_loop_hears_of_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker thread may wait for the GIL for milliseconds after it posts an outcome;
    # the task has ended by then, and its arguments (a large upload) must be freed.
    post = thread_module._Finished.post
    posted = threading.Event()

    def post_then_stall(self: Any, job: Any) -> None:
        post(self, job)
        posted.set()
        time.sleep(1.0)  # this thread's frames stay as they were when it posted

    monkeypatch.setattr(thread_module._Finished, "post", post_then_stall)
    lane = ThreadLane(1, CpuAdvisor(), 0)
    upload = _Upload()
    kept = weakref.ref(upload)
    record = record_of(_echo, upload)
    del upload
    async with lane.limiter:
        await lane.execute(record)
    assert await anyio.to_thread.run_sync(posted.wait, 5.0)  # the worker is stalling now
    record.args = ()  # the ledger and the page let go of the record's arguments too
    gc.collect()
    assert kept() is None  # while the worker thread still stalls after its post
