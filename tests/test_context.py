"""`report_progress()` and `cancelled()` inside tasks, on the loop, thread and process lanes."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from fastapi_offload import Offload, TaskInfo, TaskState, cancelled, report_progress
from fastapi_offload._config import OffloadConfig
from fastapi_offload._decorators import LaneName
from fastapi_offload._record import TaskRecord
from fastapi_offload._settings import NO_SETTINGS, TaskSettings
from fastapi_offload.core.lifecycle import Lifecycle
from fastapi_offload.core.runtime import Runtime
from fastapi_offload.stores.memory import MemoryStore

from .apps import progress_jobs as jobs

pytestmark = pytest.mark.anyio


async def until(offload: Offload, task_id: str, check: Any, limit: float = 20.0) -> TaskInfo:
    deadline = time.monotonic() + limit
    info = await offload.status(task_id)
    while not check(info):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {limit} s: {info}")
        await anyio.sleep(0.02)
        info = await offload.status(task_id)
    return info


@pytest.mark.parametrize("lane", ["loop", "thread", "process"])
async def test_progress_is_seen_while_the_task_runs(lane: LaneName, tmp_path: Path) -> None:
    release = str(tmp_path / "release")
    func: Any = jobs.report_then_wait_async if lane == "loop" else jobs.report_then_wait
    async with Offload() as offload:
        handle = await offload.options(lane=lane).submit(func, 0.25, "a quarter", release)
        info = await until(offload, handle.id, lambda i: i.progress is not None)
        # Still running: for the process lane the report crossed from the worker.
        assert info.state is TaskState.RUNNING
        assert (info.progress, info.progress_message) == (0.25, "a quarter")
        await anyio.Path(release).touch()
        await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.SUCCEEDED
    assert (info.progress, info.progress_message) == (0.25, "a quarter")  # the last report


@pytest.mark.parametrize("lane", ["thread", "process"])
async def test_the_last_report_is_kept_even_when_coalesced(lane: LaneName) -> None:
    async with Offload() as offload:
        handle = await offload.options(lane=lane).submit(jobs.report_many, 10_000)
        await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.SUCCEEDED
    assert (info.progress, info.progress_message) == (1.0, "all done")


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__(100)
        self.puts = 0

    def put(self, record: TaskRecord) -> None:
        self.puts += 1
        super().put(record)


async def test_reports_faster_than_the_store_needs_are_coalesced() -> None:
    store = CountingStore()
    runtime = Runtime(OffloadConfig(), None, store)
    lifecycle = Lifecycle(runtime)
    await lifecycle.open(detached=True)
    try:
        started = time.monotonic()
        record = runtime.admit(jobs.report_many, (200_000,), {}, TaskSettings(lane="thread"))
        assert isinstance(record, TaskRecord)  # a handle only for a key some task holds
        runtime.start(record)
        await runtime.ledger.join()
        elapsed = time.monotonic() - started
    finally:
        await lifecycle.close()
    assert record.state is TaskState.SUCCEEDED
    # admit, start, finish and one put per 0.2 s of reporting (plus the first).
    assert store.puts <= 4 + elapsed / 0.2, (store.puts, elapsed)


async def test_report_progress_outside_a_task_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"report_progress\(0.5\) was called outside a task"):
        report_progress(0.5)
    assert cancelled() is False


@pytest.mark.parametrize("lane", ["thread", "process"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1, 1.5, "half", True, None], ids=repr)
async def test_a_fraction_that_is_not_from_0_to_1_fails_the_task_naming_it(
    lane: LaneName, value: Any
) -> None:
    async with Offload() as offload:
        handle = await offload.options(lane=lane).submit(jobs.report_bad, value)
        await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.FAILED
    assert info.error is not None and "ValueError" in info.error
    assert f"report_progress({value!r}) in task tests.apps.progress_jobs.report_bad" in info.error
    assert handle.id in info.error
    assert "from 0.0 to 1.0" in info.error


async def test_a_message_that_is_not_a_string_is_a_type_error() -> None:
    async with Offload() as offload:
        handle = await offload.options(lane="thread").submit(jobs.report_bad_message, 3)
        await offload.join()
        info = await offload.status(handle.id)
    assert info.error is not None and "TypeError" in info.error
    assert "the message must be a str or None" in info.error


@pytest.mark.parametrize("lane", ["thread", "process"])
async def test_a_long_message_is_cut_to_200_characters(lane: LaneName, tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.touch()
    async with Offload() as offload:
        handle = await offload.options(lane=lane).submit(
            jobs.report_then_wait, 0.5, "m" * 500, str(release)
        )
        await offload.join()
        info = await offload.status(handle.id)
    assert info.progress_message == "m" * 199 + "\u2026"


async def test_integers_0_and_1_are_accepted(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.touch()
    async with Offload() as offload:
        handle = await offload.options(lane="thread").submit(
            jobs.report_then_wait, 1, None, str(release)
        )
        await offload.join()
        info = await offload.status(handle.id)
    assert (info.state, info.progress, info.progress_message) == (TaskState.SUCCEEDED, 1.0, None)


async def test_progress_is_per_task_not_shared(tmp_path: Path) -> None:
    release = tmp_path / "release"
    async with Offload() as offload:
        one = await offload.submit(jobs.report_then_wait, 0.1, "one", str(release))
        two = await offload.submit(jobs.report_then_wait, 0.9, "two", str(release))
        await until(offload, one.id, lambda i: i.progress is not None)
        await until(offload, two.id, lambda i: i.progress is not None)
        await anyio.Path(release).touch()
        await offload.join()
        assert (await offload.status(one.id)).progress_message == "one"
        assert (await offload.status(two.id)).progress_message == "two"


async def test_a_task_with_no_reports_has_no_progress() -> None:
    async with Offload() as offload:
        handle = await offload.submit(jobs.answer, 1)
        await offload.join()
        info = await offload.status(handle.id)
    assert (info.progress, info.progress_message) == (None, None)
    assert NO_SETTINGS.keep_result is None
