"""The public test doubles of `fastapi_offload.testing`, alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastapi_offload import BackendUnavailable, NotOffloadable, TaskState
from fastapi_offload.testing import InlineBackend, RecordingBackend

from . import jobs
from ._support import call_of

pytestmark = pytest.mark.anyio


async def test_recording_backend_records_and_runs_nothing(
    recording_backend: RecordingBackend, tmp_path: Path
) -> None:
    out = tmp_path / "pid.txt"
    call = call_of(jobs.whoami, str(out))
    recording_backend.prepare(call)
    await recording_backend.submit(call)
    assert recording_backend.calls == [call]
    assert recording_backend.names == ["tests.backends.jobs.whoami"]
    assert recording_backend.calls_to(jobs.whoami) == [call]
    assert recording_backend.calls_to(jobs.fail) == []
    info = await recording_backend.status(call.id)
    assert info is not None and info.state is TaskState.PENDING
    assert await recording_backend.status("other") is None
    assert not out.exists()
    recording_backend.clear()
    assert recording_backend.calls == []


async def test_recording_backend_can_play_a_broker_that_is_down() -> None:
    backend = RecordingBackend()
    backend.available = False
    with pytest.raises(BackendUnavailable, match="not submitted"):
        await backend.submit(call_of(jobs.whoami, "x"))
    assert backend.calls == []


def test_both_doubles_refuse_what_a_real_backend_would() -> None:
    for backend in (RecordingBackend(), InlineBackend()):
        with pytest.raises(NotOffloadable, match="argument 'path'"):
            backend.prepare(call_of(jobs.whoami, path=object()))


async def test_inline_backend_runs_the_task_during_submit(
    inline_backend: InlineBackend, tmp_path: Path
) -> None:
    out = tmp_path / "pid.txt"
    call = call_of(jobs.whoami, str(out))
    await inline_backend.submit(call)
    assert int(out.read_text()) == os.getpid()
    assert inline_backend.results[call.id] == os.getpid()
    info = await inline_backend.status(call.id)
    assert info is not None and info.state is TaskState.SUCCEEDED and info.attempts == 1


async def test_inline_backend_runs_async_tasks_retries_and_records_failures(
    tmp_path: Path,
) -> None:
    backend = InlineBackend()
    out = tmp_path / "pid.txt"
    await backend.submit(call_of(jobs.async_whoami, str(out)))
    assert out.exists()
    attempts = tmp_path / "attempts.txt"
    flaky = call_of(jobs.flaky, str(attempts), 1, retries=1)
    await backend.submit(flaky)
    info = await backend.status(flaky.id)
    assert info is not None and info.state is TaskState.SUCCEEDED and info.attempts == 2
    # The lanes' retry policy chose the wait (retry_delay 1.0, no backoff); not slept.
    assert backend.waits[flaky.id] == [1.0]
    failing = call_of(jobs.fail, "nope")
    await backend.submit(failing)
    info = await backend.status(failing.id)
    assert info is not None and info.state is TaskState.FAILED
    assert info.error == "ValueError('nope')"
    assert isinstance(backend.errors[failing.id], ValueError)


async def test_inline_backend_arguments_travel_as_json() -> None:
    backend = InlineBackend()
    call = call_of(jobs.flaky, ("tuple", "becomes", "list"), 0)
    await backend.submit(call)
    # `flaky` received a list: Path(list) raises TypeError, recorded as the failure.
    assert isinstance(backend.errors[call.id], TypeError)


async def test_inline_backend_with_targets_refuses_what_the_worker_would(
    tmp_path: Path,
) -> None:
    backend = InlineBackend(jobs)
    out = tmp_path / "ran.txt"
    call = call_of(jobs.not_registered, str(out))
    await backend.submit(call)
    info = await backend.status(call.id)
    assert info is not None and info.state is TaskState.FAILED
    assert info.error is not None and "UnregisteredTask" in info.error
    assert not out.exists()


async def test_inline_backend_can_raise_the_task_error() -> None:
    backend = InlineBackend(raise_errors=True)
    with pytest.raises(ValueError, match="loud"):
        await backend.submit(call_of(jobs.fail, "loud"))


async def test_inline_backend_stops_an_async_task_at_its_timeout() -> None:
    backend = InlineBackend()
    call = call_of("asyncio.sleep", 5, timeout=0.05)
    await backend.submit(call)
    info = await backend.status(call.id)
    assert info is not None and info.state is TaskState.FAILED
    assert info.error is not None and "TaskTimeout" in info.error


async def test_only_plain_functions_travel_to_a_remote_backend(tmp_path: Path) -> None:
    import functools

    from fastapi_offload import Offload

    backend = RecordingBackend()
    async with Offload(backend=backend) as offload:
        with pytest.raises(NotOffloadable, match="it is a partial, not a module-level function"):
            await offload.submit(functools.partial(jobs.whoami, str(tmp_path)))
    assert backend.calls == []
