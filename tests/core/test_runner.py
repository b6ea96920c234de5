"""The runner (`core/runner.py`): how a task's end becomes its state, and how shutdown ends.

Numbered behaviours of the core rebuild: (1) any exception fails one task only,
(2) a task's own `CancelledError` is not a shutdown, (3) a start from another thread
that loses the race with shutdown is failed, not orphaned, (7) shutdown is bounded by
`shutdown_timeout`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from fastapi_offload import Offload, OffloadError, TaskState
from fastapi_offload._config import OffloadConfig
from fastapi_offload._settings import NO_SETTINGS
from fastapi_offload.core.lifecycle import Lifecycle
from fastapi_offload.core.runtime import Runtime

from ..apps import jobs

pytestmark = pytest.mark.anyio


class Custom(BaseException):
    pass


RAISED: list[Callable[[], BaseException]] = [
    KeyboardInterrupt,
    lambda: GeneratorExit(),
    lambda: SystemExit(3),
    lambda: Custom("mine"),
]


async def raise_async(make: Callable[[], BaseException]) -> None:
    await anyio.lowlevel.checkpoint()
    raise make()


def raise_sync(make: Callable[[], BaseException]) -> None:
    raise make()


@pytest.mark.parametrize(
    "make", RAISED, ids=["KeyboardInterrupt", "GeneratorExit", "SystemExit", "custom"]
)
@pytest.mark.parametrize("lane", ["loop", "thread"])
async def test_any_exception_fails_that_task_only(
    lane: str, make: Callable[[], BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    func: Any = raise_async if lane == "loop" else raise_sync
    async with Offload() as offload:
        handle = await offload.submit(func, make)
        with anyio.fail_after(10):
            await offload.join()
        info = await offload.status(handle.id)
        assert info.state is TaskState.FAILED
        assert info.error == repr(make())
        assert offload.stats().lanes[lane].failed == 1
        # The runtime lives on: the next task runs.
        after = await offload.submit(jobs.async_sleep, 0)
        await offload.join()
        assert (await offload.status(after.id)).state is TaskState.SUCCEEDED
    [failure] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert handle.id in failure.getMessage() and handle.name in failure.getMessage()


async def cancel_myself() -> None:
    await anyio.lowlevel.checkpoint()
    raise asyncio.CancelledError("my own")


def cancel_in_thread() -> None:
    raise asyncio.CancelledError("my own, in a thread")


@pytest.mark.parametrize("func", [cancel_myself, cancel_in_thread])
async def test_a_tasks_own_cancelled_error_is_a_failure_and_is_retried(
    func: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with Offload() as offload:
        handle = await offload.options(retries=1, retry_delay=0).submit(func)
        with anyio.fail_after(10):
            await offload.join()
        info = await offload.status(handle.id)
        lane = offload.stats().lanes[handle.lane]
    assert info.state is TaskState.FAILED
    assert info.attempts == 2 and lane.retried == 1 and lane.cancelled == 0
    assert "CancelledError" in (info.error or "")
    assert any(r.levelname == "ERROR" and handle.id in r.getMessage() for r in caplog.records)


async def test_shutdown_cancels_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    offload = Offload(shutdown_timeout=0.2)
    async with offload:
        handle = await offload.submit(jobs.async_sleep, 60)
    info = await offload.status(handle.id)
    assert info.state is TaskState.CANCELLED
    assert "shutdown" in (info.error or "")
    assert offload.stats().lanes["loop"].cancelled == 1
    assert any(handle.id in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


async def stubborn(seconds: float) -> None:
    # Ignores cancellation for `seconds` after the first one: the worst case for a
    # shutdown (then gives up, so the test's event loop can end).
    deadline: float | None = None
    while deadline is None or time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:  # noqa: PERF203 - the test is the loop
            deadline = deadline or time.monotonic() + seconds


async def test_shutdown_is_bounded_by_shutdown_timeout(caplog: pytest.LogCaptureFixture) -> None:
    offload = Offload(shutdown_timeout=0.5)
    async with offload:
        await offload.submit(stubborn, 2)
        started = time.monotonic()
    # Within its budget (there was a hard-coded 5 s of grace on top before): the order
    # of magnitude is what counts, not the exact time.
    assert time.monotonic() - started < 3
    assert "ignored its cancellation" in caplog.text


async def test_a_start_from_another_thread_after_shutdown_is_failed_not_orphaned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A sync endpoint's thread (or a sync dependency's teardown) starting a task that was
    # admitted before the shutdown: the start reaches the loop after the runner closed.
    # It must end as `failed` with the reason, not as a task that nobody awaits.
    runtime = Runtime(OffloadConfig.resolve({"shutdown_timeout": 0}), None)
    lifecycle = Lifecycle(runtime)
    await lifecycle.open(detached=True)
    record = runtime.admit(jobs.nap, (0,), {}, NO_SETTINGS)
    await lifecycle.close()
    thread = threading.Thread(target=runtime.start, args=(record,))
    thread.start()
    thread.join()
    with anyio.fail_after(5):
        await runtime.ledger.join()
    info = await runtime.status(record.id)
    assert info.state is TaskState.FAILED
    assert "shut down" in (info.error or "")
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("offload:")]
    assert record.id in caplog.text


async def converts_its_cancellation(runs: list[int]) -> None:
    runs.append(1)
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        raise RuntimeError("cleanup failed") from None


async def test_a_task_cancelled_at_shutdown_is_never_retried_whatever_it_raises() -> None:
    # Found in review: a cancellation turned into another exception was retried, and
    # the retry ran after the shutdown had returned.
    offload = Offload(shutdown_timeout=0.5)
    runs: list[int] = []
    async with offload:
        handle = await offload.options(retries=3, retry_delay=0).submit(
            converts_its_cancellation, runs
        )
    info = await offload.status(handle.id)
    assert info.state is TaskState.CANCELLED and runs == [1]
    assert offload.stats().lanes["loop"] == dataclasses.replace(
        offload.stats().lanes["loop"], waiting=0, running=0, retried=0, cancelled=1
    )
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("offload:")]


def test_a_loop_that_is_not_asyncio_is_refused_clearly() -> None:
    # trio is not supported (the runner starts plain asyncio tasks): outside an asyncio
    # loop, starting a runtime says so instead of failing somewhere deeper.
    runtime = Runtime(OffloadConfig.resolve({}), None)
    with pytest.raises(OffloadError, match="runs on asyncio"):
        runtime.attach()


async def test_a_task_cancelled_before_its_first_step_is_settled() -> None:
    async with Offload() as offload:
        handle = await offload.submit(jobs.async_sleep, 10)
        # Not started yet: nothing has awaited since it was submitted.
        [task] = [t for t in asyncio.all_tasks() if t.get_name().startswith("offload:")]
        task.cancel()
        with anyio.fail_after(5):
            await offload.join()
        info = await offload.status(handle.id)
        assert info.state is TaskState.CANCELLED
        assert offload.stats().lanes["loop"].waiting == 0
