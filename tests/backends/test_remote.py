"""Both remote backends against a real Redis and real worker processes.

Each test runs once with Celery (`celery -A tests.backends.celery_worker worker`) and
once with RQ (`rq worker --worker-class tests.backends.rq_worker.Worker`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fastapi_offload import BackendUnavailable, NotOffloadable, TaskInfo, TaskState
from fastapi_offload.backends.base import Backend
from fastapi_offload.backends.celery import CeleryBackend
from fastapi_offload.backends.rq import RQBackend

from . import jobs
from ._support import call_of, wait_for, wait_for_state
from .conftest import Remote

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.redis,
    # Celery's Redis result backend (celery 5.7) stores states with `setex`, which
    # redis-py 8 deprecates; the warning comes from Celery's code, not ours.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

FINISHED = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


def _in_order(info: TaskInfo, before: float) -> None:
    # The status's times, as on the in-process lanes: created, then started, then finished.
    times = (info.created_at, info.started_at, info.finished_at)
    assert None not in times, info
    assert before <= times[0] <= times[1] <= times[2], info  # type: ignore[operator]


async def test_the_task_runs_in_the_worker_process(remote: Remote, tmp_path: Path) -> None:
    out = tmp_path / "pid.txt"
    call = call_of(jobs.whoami, str(out))
    remote.backend.prepare(call)
    before = time.time()
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.SUCCEEDED, info
    assert info.name == "tests.backends.jobs.whoami"
    assert info.lane == remote.backend.name
    assert info.attempts == 1
    _in_order(info, before)
    assert int(out.read_text()) != os.getpid()


async def test_an_async_task_runs_to_completion_in_the_worker(
    remote: Remote, tmp_path: Path
) -> None:
    out = tmp_path / "pid.txt"
    call = call_of(jobs.async_whoami, str(out))
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.SUCCEEDED, info
    assert int(out.read_text()) != os.getpid()


async def test_status_moves_from_pending_through_running_to_succeeded(remote: Remote) -> None:
    call = call_of(jobs.sleepy, 0.8)
    await remote.backend.submit(call)
    first = await remote.backend.status(call.id)
    assert first is not None and first.state in (TaskState.PENDING, TaskState.RUNNING)
    # Celery writes its STARTED record a moment before the worker adds the start time
    # to it: wait for both, while the task still runs.
    running = await wait_for(
        remote.backend,
        call.id,
        lambda i: i.state is TaskState.RUNNING and i.started_at is not None,
        "running with its start time",
        log=remote.log,
    )
    assert running.started_at is not None and running.created_at is not None, running
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.SUCCEEDED, info
    # The same start (RQ sets its `started_at` again in the work horse, ms later).
    assert info.started_at is not None and abs(info.started_at - running.started_at) < 0.5


async def test_a_failing_task_is_failed_with_the_repr_of_its_error(remote: Remote) -> None:
    call = call_of(jobs.fail, "the disk is full")
    before = time.time()
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.FAILED
    # The documented format (docs/status.md), the same as on the in-process lanes.
    assert info.error == "ValueError('the disk is full')"
    _in_order(info, before)


async def test_a_name_that_is_not_registered_is_refused(remote: Remote, tmp_path: Path) -> None:
    out = tmp_path / "ran.txt"
    call = call_of(jobs.not_registered, str(out))
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.FAILED
    assert info.error is not None and "tests.backends.jobs.not_registered" in info.error
    assert not out.exists()
    log = remote.worker.wait_for_log("tests.backends.jobs.not_registered")
    assert "unregistered task" in log or "UnregisteredTask" in log


async def test_an_arbitrary_import_path_is_never_called(remote: Remote, tmp_path: Path) -> None:
    out = tmp_path / "pwned"
    call = call_of("os.system", f"touch {out}")
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.FAILED
    assert not out.exists()


async def test_an_id_that_was_never_submitted_is_not_vouched_for(remote: Remote) -> None:
    assert await remote.backend.status(call_of(jobs.whoami, "x").id) is None


async def test_retries_run_again_until_the_task_succeeds(remote: Remote, tmp_path: Path) -> None:
    out = tmp_path / "attempts.txt"
    # RQ with a delay goes through its scheduler (`rq worker --with-scheduler`).
    call = call_of(jobs.flaky, str(out), 2, retries=2, retry_delay=1)
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, within=20, log=remote.log)
    assert info.state is TaskState.SUCCEEDED, info
    assert info.attempts == 3
    assert len(out.read_text().splitlines()) == 3
    # `started_at` is the first attempt's (each attempt wrote down when it began).
    began = [float(line.rpartition(" at ")[2]) for line in out.read_text().splitlines()]
    assert info.started_at is not None and info.started_at <= began[0] < began[1], info


async def test_a_task_that_keeps_failing_stops_after_its_retries(
    remote: Remote, tmp_path: Path
) -> None:
    out = tmp_path / "attempts.txt"
    call = call_of(jobs.flaky, str(out), 5, retries=1, retry_delay=0)
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.FAILED
    assert info.attempts == 2
    assert info.error == "RuntimeError('attempt 2 fails on purpose')"
    assert len(out.read_text().splitlines()) == 2


async def test_a_task_past_its_timeout_is_stopped_and_failed(remote: Remote) -> None:
    call = call_of(jobs.sleepy, 30, timeout=1)
    started = time.monotonic()
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert time.monotonic() - started < 10
    assert info.state is TaskState.FAILED
    # The in-process lanes' `TaskTimeout`, whatever the queue's own timeout error is.
    assert info.error == (
        "TaskTimeout('tests.backends.jobs.sleepy ran longer than its timeout of 1 s and was "
        "stopped')"
    )


@pytest.mark.parametrize("kind", ["celery", "rq"])
async def test_a_broker_that_is_down_gives_backend_unavailable_quickly(
    kind: str, closed_port: int
) -> None:
    url = f"redis://127.0.0.1:{closed_port}/0"
    backend: Backend
    if kind == "celery":
        backend = CeleryBackend(broker_url=url, result_backend=url, broker_timeout=1)
    else:
        backend = RQBackend(redis_url=url, broker_timeout=1)
    call = call_of(jobs.whoami, "x")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await backend.submit(call)
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert f"127.0.0.1:{closed_port}" in message and "was not submitted" in message
    assert caught.value.status_code == 503
    with pytest.raises(BackendUnavailable):
        await backend.status(call.id)


@pytest.mark.parametrize("kind", ["celery", "rq"])
async def test_a_broker_that_never_answers_is_given_up_on_in_bounded_time(
    kind: str, silent_port: int
) -> None:
    url = f"redis://127.0.0.1:{silent_port}/0"
    backend: Backend
    if kind == "celery":
        backend = CeleryBackend(broker_url=url, result_backend=url, broker_timeout=0.5)
    else:
        backend = RQBackend(redis_url=url, broker_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        await backend.submit(call_of(jobs.whoami, "x"))
    # Two attempts of half a second each at most, plus the retry pause: not 20 s.
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("kind", ["celery", "rq"])
def test_an_argument_that_is_not_json_is_refused_by_name(kind: str) -> None:
    backend: Backend
    if kind == "celery":
        backend = CeleryBackend(broker_url="redis://127.0.0.1:1/0", result_backend=None)
    else:
        backend = RQBackend(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(NotOffloadable) as caught:
        backend.prepare(call_of(jobs.whoami, path=b"/tmp/x"))
    message = str(caught.value)
    assert "argument 'path'" in message and "tests.backends.jobs.whoami" in message
    assert "bytes" in message and "JSON" in message
