"""`Offload.cancel(task_id)` (`core/runtime.py`): pending, running on each lane, finished,
unknown, and racing. The cancel route: tests/web/test_status.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest

from fastapi_offload import Offload, TaskState
from fastapi_offload._config import OffloadConfig
from fastapi_offload._record import TaskRecord
from fastapi_offload._settings import TaskSettings
from fastapi_offload.core.lifecycle import Lifecycle
from fastapi_offload.core.runtime import Runtime

from ..apps import progress_jobs as jobs
from ..helpers import until_state as until

pytestmark = pytest.mark.anyio

BY_REQUEST = "cancelled by request"


async def test_a_pending_task_never_starts(tmp_path: Path) -> None:
    release, ran = tmp_path / "release", tmp_path / "ran"
    async with Offload(thread_workers=1) as offload:
        blocker = await offload.submit(jobs.wait_for, str(release))
        waiting = await offload.options(lane="thread").submit(jobs.append, str(ran), "ran")
        await until(offload, blocker.id, {TaskState.RUNNING})
        assert (await offload.status(waiting.id)).state is TaskState.PENDING
        assert await offload.cancel(waiting.id) is True
        info = await until(offload, waiting.id, {TaskState.CANCELLED})
        await anyio.Path(release).touch()
        await offload.join()
    assert info.error == BY_REQUEST
    assert info.started_at is None and info.attempts == 0
    assert not ran.exists()
    assert offload.stats().lanes["thread"].cancelled == 1


async def test_a_running_loop_task_is_cancelled_at_its_next_await(tmp_path: Path) -> None:
    left = tmp_path / "left"
    async with Offload() as offload:
        handle = await offload.submit(jobs.sleep_async, 30, str(left))
        await until(offload, handle.id, {TaskState.RUNNING})
        started = time.monotonic()
        assert await offload.cancel(handle.id) is True
        info = await until(offload, handle.id, {TaskState.CANCELLED}, limit=5)
    assert time.monotonic() - started < 5
    assert info.error == BY_REQUEST
    assert left.read_text() == "left"  # its `finally` ran


async def test_a_running_process_task_has_its_worker_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    async with Offload() as offload:
        handle = await offload.options(lane="process").submit(
            jobs.sleep_with_pid, 30, str(pid_file)
        )
        await until(offload, handle.id, {TaskState.RUNNING})
        pid = int(await appeared(pid_file))
        assert await offload.cancel(handle.id) is True
        info = await until(offload, handle.id, {TaskState.CANCELLED}, limit=5)
        assert info.error == BY_REQUEST
        # The worker is gone: killed, not left to sleep out its 30 s.
        with anyio.fail_after(5):
            while True:
                if not _alive(pid):
                    break
                await anyio.sleep(0.02)
        # The lane goes on with a fresh worker.
        again = await offload.options(lane="process", keep_result=True).submit(jobs.answer, 7)
        await offload.join()
        assert (await offload.status(again.id)).result == 7


async def appeared(path: Path) -> str:
    with anyio.fail_after(20):
        while True:
            if await anyio.Path(path).exists():
                return await anyio.Path(path).read_text()
            await anyio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): read its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def test_a_thread_task_is_asked_to_stop_and_ends_cancelled(tmp_path: Path) -> None:
    out = tmp_path / "out"
    async with Offload() as offload:
        handle = await offload.submit(jobs.sleep_until_cancelled, 30, str(out))
        await until(offload, handle.id, {TaskState.RUNNING})
        assert await offload.cancel(handle.id) is True
        info = await until(offload, handle.id, {TaskState.CANCELLED}, limit=5)
    assert out.read_text() == "stopped early"
    assert info.error == BY_REQUEST


async def test_a_thread_task_that_ignores_the_flag_runs_out_and_ends_cancelled(
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    async with Offload(keep_result=True) as offload:
        handle = await offload.submit(jobs.wait_for, str(release))
        await until(offload, handle.id, {TaskState.RUNNING})
        assert await offload.cancel(handle.id) is True
        await anyio.sleep(0.1)
        # A thread cannot be interrupted: it is still running, and says so.
        assert (await offload.status(handle.id)).state is TaskState.RUNNING
        await anyio.Path(release).touch()
        info = await until(offload, handle.id, {TaskState.CANCELLED}, limit=5)
    assert info.error == BY_REQUEST and info.result is None


async def test_a_task_waiting_to_retry_is_cancelled(tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    async with Offload() as offload:
        handle = await offload.options(retries=3, retry_delay=30).submit(
            jobs.fail_with, "value", str(attempts)
        )
        await appeared(attempts)
        await until(offload, handle.id, {TaskState.PENDING})
        assert await offload.cancel(handle.id) is True
        info = await until(offload, handle.id, {TaskState.CANCELLED}, limit=5)
    assert info.error == BY_REQUEST
    assert attempts.read_text().splitlines() == ["value"]


async def test_unknown_and_finished_ids_are_not_cancelled() -> None:
    async with Offload() as offload:
        handle = await offload.submit(jobs.answer, 1)
        await offload.join()
        assert await offload.cancel(handle.id) is False
        assert (await offload.status(handle.id)).state is TaskState.SUCCEEDED
        assert await offload.cancel("0" * 32) is False
        assert await offload.cancel("not an id") is False


async def test_a_cancel_racing_the_tasks_end_leaves_one_clean_end() -> None:
    # A loop task that ends in the same step as the cancel: it is recorded once, as what
    # it did, and the counters stay consistent.
    async with Offload(keep_result=True) as offload:
        handles = [await offload.submit(jobs.answer_async, i) for i in range(50)]
        answers = [await offload.cancel(handle.id) for handle in handles]
        await offload.join()
        infos = [await offload.status(handle.id) for handle in handles]
        stats = offload.stats().lanes["loop"]
    assert {info.state for info in infos} <= {TaskState.SUCCEEDED, TaskState.CANCELLED}
    for answer, info in zip(answers, infos, strict=True):
        if info.state is TaskState.CANCELLED:
            assert answer is True and info.error == BY_REQUEST
    assert stats.succeeded + stats.cancelled == 50
    assert (stats.waiting, stats.running) == (0, 0)


async def test_a_task_cancelled_before_it_starts_never_runs(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    runtime = Runtime(OffloadConfig(), None)
    lifecycle = Lifecycle(runtime)
    await lifecycle.open(detached=True)
    try:
        # Admitted in its request, not started yet (the response is still on its way).
        record = runtime.admit(jobs.append, (str(ran), "ran"), {}, TaskSettings())
        assert isinstance(record, TaskRecord)  # a handle only for a key some task holds
        assert await runtime.cancel(record.id) is True
        runtime.start(record)
        await runtime.ledger.join()
    finally:
        await lifecycle.close()
    assert (record.state, record.error) == (TaskState.CANCELLED, BY_REQUEST)
    assert not ran.exists()
