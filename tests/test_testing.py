"""The test doubles follow results, progress, cancel and `retry_on` like the real backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastapi_offload import Offload, TaskState
from fastapi_offload.testing import InlineBackend, RecordingBackend

from .apps import progress_jobs as jobs

pytestmark = pytest.mark.anyio


async def test_inline_keeps_a_json_result_and_the_last_progress() -> None:
    async with Offload(backend=InlineBackend()) as offload:
        counted = await offload.submit(jobs.report_many, 100)
        odd = await offload.submit(jobs.not_json)
        counted_info, odd_info = await offload.status(counted.id), await offload.status(odd.id)
    assert (counted_info.result, counted_info.progress) == (100, 1.0)
    assert counted_info.progress_message == "all done"
    assert odd_info.state is TaskState.SUCCEEDED and odd_info.result is None
    assert odd_info.error is not None and odd_info.error.startswith("result not kept:")


async def test_inline_retries_only_what_retry_on_names(tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    async with Offload(backend=InlineBackend()) as offload:
        handle = await offload.options(retries=3, retry_on=(ConnectionError,)).submit(
            jobs.fail_with, "value", str(attempts)
        )
        info = await offload.status(handle.id)
    assert (info.state, info.attempts) == (TaskState.FAILED, 1)


async def test_recording_cancel_marks_a_recorded_id_cancelled() -> None:
    backend = RecordingBackend()
    async with Offload(backend=backend) as offload:
        handle = await offload.submit(jobs.answer, 1)
        assert await offload.cancel(handle.id) is True
        assert await offload.cancel(handle.id) is False
        assert await offload.cancel("0" * 32) is False
        info = await offload.status(handle.id)
    assert (info.state, info.error) == (TaskState.CANCELLED, "cancelled by request")
    assert backend.cancelled == [handle.id]
