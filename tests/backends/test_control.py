"""Kept results, progress, cancel and the retry policy, on both backends' real workers.

Each test using `remote` runs once with Celery and once with RQ. The workers run one
task at a time, so a task submitted after another starts after it.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import anyio
import pytest
import redis
from rq.job import Job

from fastapi_offload import BackendUnavailable, TaskState
from fastapi_offload.backends.base import Backend
from fastapi_offload.backends.celery import CeleryBackend
from fastapi_offload.backends.rq import RQBackend

from . import control_jobs
from ._support import call_of, wait_for, wait_for_state
from .conftest import Remote, WorkerProcess

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.redis,
    # Celery's Redis result backend (celery 5.7) stores states with `setex`, which
    # redis-py 8 deprecates; the warning comes from Celery's code, not ours.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

FINISHED = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


async def cancel(backend: Backend, task_id: str) -> bool:
    # `cancel` is optional for a backend; both of these have it.
    assert isinstance(backend, CeleryBackend | RQBackend)
    return await backend.cancel(task_id)


def lines(path: Path) -> list[float]:
    return [float(line) for line in path.read_text().splitlines()] if path.exists() else []


# -- results ----------------------------------------------------------------------------


async def test_a_json_result_is_kept_in_the_status(remote: Remote) -> None:
    value = {"rows": [1, 2.5, "three", None, True], "nested": {"ok": False}}
    call = call_of(control_jobs.echo, value)
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.SUCCEEDED, info
    assert info.result == value
    assert info.error is None


async def test_a_10_mb_error_is_kept_capped_and_masked(
    remote: Remote, request: pytest.FixtureRequest
) -> None:
    # Was: the whole message stored by Celery / RQ and served, password included.
    call = call_of(control_jobs.raise_big, 10_000_000)
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.FAILED, info
    assert info.error is not None and len(info.error) < 4200, len(info.error or "")
    assert info.error.startswith("ValueError('see postgres://app:***@db/prod xxx"), info.error
    assert "[truncated, " in info.error and "S3cr3tPW" not in info.error
    # What the broker's result store holds is capped too (RQ: its traceback; Celery:
    # the exception's message).
    url = "rq_url" if isinstance(remote.backend, RQBackend) else "celery_url"
    client = redis.Redis.from_url(request.getfixturevalue(url))
    try:
        keys = list(client.scan_iter(f"*{call.id}*"))
        sizes = [int(client.memory_usage(key) or 0) for key in keys]
    finally:
        client.close()
    assert sizes and max(sizes) < 200_000, sizes


async def test_a_result_that_is_not_json_succeeds_and_says_why(remote: Remote) -> None:
    call = call_of(control_jobs.not_json)
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.SUCCEEDED, info
    assert info.result is None
    assert info.error is not None
    assert info.error.startswith("result not kept: set is not JSON-serializable"), info.error


async def test_a_result_over_the_size_limit_is_not_kept(remote: Remote) -> None:
    # The workers' limit is OFFLOAD_RESULT_MAX_BYTES' default, 1,048,576 bytes of JSON.
    call = call_of(control_jobs.big, 1_100_000)
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.SUCCEEDED, info
    assert info.result is None
    assert info.error is not None and "result not kept: too large (more than 1.0 MB" in info.error


# -- progress ---------------------------------------------------------------------------


async def test_progress_reported_by_a_running_task_is_in_its_status(
    remote: Remote, tmp_path: Path
) -> None:
    go_on = tmp_path / "go-on"
    call = call_of(control_jobs.progress_until, str(go_on))
    await remote.backend.submit(call)
    running = await wait_for(
        remote.backend, call.id, lambda info: info.progress == 0.25, "at 25%", log=remote.log
    )
    assert running.state is TaskState.RUNNING
    assert running.progress_message == "a quarter"
    # The name is kept next to the progress (Celery: the extended fields of the record).
    assert running.name == "tests.backends.control_jobs.progress_until"
    go_on.touch()
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.SUCCEEDED and info.result == "done", info
    if remote.backend.name == "rq":
        # The job's meta outlives the run: the last report stays.
        assert (info.progress, info.progress_message) == (0.75, "three quarters")
    else:
        # Celery's SUCCESS record replaces the PROGRESS one.
        assert (info.progress, info.progress_message) == (None, None)


# -- cancel -----------------------------------------------------------------------------


async def test_a_running_task_that_is_cancelled_stops(remote: Remote, tmp_path: Path) -> None:
    started = tmp_path / "started"
    call = call_of(control_jobs.mark_then_sleep, str(started), 30)
    await remote.backend.submit(call)
    await wait_for_state(remote.backend, call.id, [TaskState.RUNNING], log=remote.log)
    deadline = time.monotonic() + 10
    while not started.exists():
        assert time.monotonic() < deadline, remote.log()
        await anyio.sleep(0.05)
    before = time.monotonic()
    assert await cancel(remote.backend, call.id) is True
    info = await wait_for_state(remote.backend, call.id, FINISHED, within=10, log=remote.log)
    assert time.monotonic() - before < 10  # not the 30 s the task sleeps
    assert info.state is TaskState.CANCELLED, info
    assert info.error == "cancelled by request"
    assert await cancel(remote.backend, call.id) is False  # it has ended


async def test_a_queued_task_that_is_cancelled_never_runs(remote: Remote, tmp_path: Path) -> None:
    blocker_started, victim_started = tmp_path / "blocker", tmp_path / "victim"
    blocker = call_of(control_jobs.mark_then_sleep, str(blocker_started), 30)
    victim = call_of(control_jobs.mark_then_sleep, str(victim_started), 0)
    await remote.backend.submit(blocker)
    try:
        await wait_for_state(remote.backend, blocker.id, [TaskState.RUNNING], log=remote.log)
        await remote.backend.submit(victim)
        queued = await remote.backend.status(victim.id)
        assert queued is not None and queued.state is TaskState.PENDING, queued
        assert await cancel(remote.backend, victim.id) is True
        # At once: no worker needs to have looked at it.
        info = await remote.backend.status(victim.id)
        assert info is not None and info.state is TaskState.CANCELLED, info
        assert info.error == "cancelled by request"
        assert info.name == "tests.backends.control_jobs.mark_then_sleep"
    finally:
        # Free the worker, also when the test fails: the next tests need it.
        await cancel(remote.backend, blocker.id)
    # A task sent after the victim runs after it would have: the victim had its turn.
    after = call_of(control_jobs.echo, "after")
    await remote.backend.submit(after)
    done = await wait_for_state(remote.backend, after.id, FINISHED, log=remote.log)
    assert done.state is TaskState.SUCCEEDED, done
    assert not victim_started.exists()
    stopped = await remote.backend.status(blocker.id)
    assert stopped is not None and stopped.state is TaskState.CANCELLED, stopped
    final = await remote.backend.status(victim.id)
    assert final is not None and final.state is TaskState.CANCELLED, final


async def test_cancelling_an_unknown_or_finished_task_is_false(remote: Remote) -> None:
    assert await cancel(remote.backend, call_of(control_jobs.echo, 1).id) is False
    assert await cancel(remote.backend, "not-an-id") is False
    call = call_of(control_jobs.echo, 1)
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.SUCCEEDED, info
    assert await cancel(remote.backend, call.id) is False
    after = await remote.backend.status(call.id)
    assert after is not None and after.state is TaskState.SUCCEEDED


@pytest.mark.parametrize("kind", ["celery", "rq"])
async def test_cancel_with_the_broker_down_is_backend_unavailable(
    kind: str, closed_port: int
) -> None:
    url = f"redis://127.0.0.1:{closed_port}/0"
    backend: CeleryBackend | RQBackend
    if kind == "celery":
        backend = CeleryBackend(broker_url=url, result_backend=url, broker_timeout=1)
    else:
        backend = RQBackend(redis_url=url, broker_timeout=1)
    task_id = call_of(control_jobs.echo, 1).id
    with pytest.raises(BackendUnavailable) as caught:
        await backend.cancel(task_id)
    message = str(caught.value)
    assert f"127.0.0.1:{closed_port}" in message and task_id in message
    assert "not cancelled" in message


# -- retry policy -----------------------------------------------------------------------


async def test_a_failure_retry_on_does_not_name_fails_at_once(
    remote: Remote, tmp_path: Path
) -> None:
    trace = tmp_path / "attempts"
    call = call_of(
        control_jobs.attempt,
        str(trace),
        "ValueError",
        5,
        retries=3,
        retry_delay=0,
        retry_on=("builtins.KeyError",),
    )
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.FAILED, info
    assert info.error is not None and "ValueError" in info.error
    assert info.attempts == 1
    assert len(lines(trace)) == 1


async def test_a_failure_retry_on_names_is_retried(remote: Remote, tmp_path: Path) -> None:
    # KeyError is a LookupError: matched through its type's bases, as locally.
    trace = tmp_path / "attempts"
    call = call_of(
        control_jobs.attempt,
        str(trace),
        "KeyError",
        1,
        retries=2,
        retry_delay=0,
        retry_on=("builtins.LookupError",),
    )
    await remote.backend.submit(call)
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    assert info.state is TaskState.SUCCEEDED, info
    assert (info.attempts, info.result) == (2, 2)
    assert len(lines(trace)) == 2


async def test_celery_backoff_waits_longer_before_each_retry(
    celery_backend: CeleryBackend, celery_worker: WorkerProcess, tmp_path: Path
) -> None:
    # Waits of 50-100% of 0.3 s, 0.6 s, 1.2 s: the third is at least twice the first,
    # where without backoff all three would be 0.3 s.
    trace = tmp_path / "attempts"
    call = call_of(
        control_jobs.attempt,
        str(trace),
        "ValueError",
        3,
        retries=3,
        retry_delay=0.3,
        retry_backoff=True,
    )
    await celery_backend.submit(call)
    info = await wait_for_state(celery_backend, call.id, FINISHED, within=20, log=celery_worker.log)
    assert info.state is TaskState.SUCCEEDED and info.attempts == 4, info
    times = lines(trace)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.1 and gaps[2] >= 0.5, gaps
    assert gaps[2] > 1.5 * gaps[0], gaps


@pytest.mark.parametrize("backoff", [False, True])
async def test_rq_backoff_travels_as_growing_retry_intervals(rq_url: str, backoff: bool) -> None:
    # Sent to a queue nobody listens on, and read back as the worker would read it.
    backend = RQBackend(redis_url=rq_url, queue="nobody-listens-here")
    call = call_of(
        control_jobs.echo,
        1,
        retries=4,
        retry_delay=2,
        retry_backoff=backoff,
        retry_on=("builtins.KeyError",),
    )
    await backend.submit(call)
    connection = redis.Redis.from_url(rq_url)
    try:
        job = Job.fetch(call.id, connection=connection, serializer="json")
        intervals = job.retry_intervals
        assert job.meta["offload_retry_on"] == ["builtins.KeyError"]
    finally:
        connection.close()
    if backoff:
        # Whole seconds of 50-100% of 2, 4, 8, 16.
        assert intervals is not None and len(intervals) == 4
        for n, interval in enumerate(intervals):
            assert 2**n <= interval <= 2 ** (n + 1), intervals
    else:
        assert intervals == [2, 2, 2, 2]
    assert await backend.cancel(call.id) is True
    await backend.stop()
