"""Delayed calls (`TaskCall.due_at`) on the remote backends: Celery (`eta`) and RQ (its
schedule, run by a worker started `--with-scheduler`) against a real Redis and real
worker processes; and the refusals in the request where a delay cannot be honoured."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from fastapi_offload import NotOffloadable, Offload, TaskCall, TaskInfo, TaskState
from fastapi_offload._config import OffloadConfig
from fastapi_offload._record import TaskRecord
from fastapi_offload._settings import TaskSettings
from fastapi_offload.backends.celery import CeleryBackend
from fastapi_offload.core.runtime import Runtime
from fastapi_offload.testing import InlineBackend, RecordingBackend

from . import control_jobs as jobs
from ._support import call_of, wait_for_state
from .conftest import Remote

pytestmark = [
    pytest.mark.anyio,
    # Celery's Redis result backend (celery 5.7) stores states with `setex`, which
    # redis-py 8 deprecates; the warning comes from Celery's code, not ours.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

FINISHED = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


def stamps(path: Path) -> list[tuple[float, int]]:
    if not path.exists():
        return []
    return [
        (float(at), int(pid))
        for at, pid in (line.split() for line in path.read_text().splitlines())
    ]


def delayed(call: TaskCall, seconds: float) -> TaskCall:
    return dataclasses.replace(call, due_at=time.time() + seconds)


@pytest.mark.redis
async def test_a_delayed_task_waits_in_the_backend_and_runs_once_due(
    remote: Remote, tmp_path: Path
) -> None:
    out = tmp_path / "stamps"
    call = delayed(call_of(jobs.stamp, str(out)), 3)
    assert call.due_at is not None
    remote.backend.prepare(call)
    await remote.backend.submit(call)
    info = await remote.backend.status(call.id)
    assert info is not None and info.state is TaskState.SCHEDULED, info
    assert info.due_at == call.due_at
    await anyio.sleep(max(call.due_at - time.time() - 0.5, 0))
    early = stamps(out)  # half a second before it is due
    done = await wait_for_state(remote.backend, call.id, FINISHED, within=20, log=remote.log)
    runs = stamps(out)
    print(f"{remote.backend.name}: ran {runs[0][0] - call.due_at:.2f} s after its due time")
    assert early == [], "it ran before it was due"
    assert done.state is TaskState.SUCCEEDED, done
    assert len(runs) == 1 and runs[0][0] >= call.due_at


@pytest.mark.redis
async def test_a_delayed_task_cancelled_in_the_backend_never_runs(
    remote: Remote, tmp_path: Path
) -> None:
    out = tmp_path / "stamps"
    call = delayed(call_of(jobs.stamp, str(out)), 1.5)
    await remote.backend.submit(call)
    cancel = getattr(remote.backend, "cancel")  # noqa: B009 - both declare it
    assert await cancel(call.id) is True
    info = await wait_for_state(remote.backend, call.id, FINISHED, log=remote.log)
    await anyio.sleep(max((call.due_at or 0) - time.time(), 0) + 2.5)  # past due, and polled
    assert info.state is TaskState.CANCELLED, info
    assert stamps(out) == []


class ProtocolOnly:
    """A backend that follows the protocol only: it declares no delays."""

    name = "mine"

    def prepare(self, call: TaskCall) -> None:
        pass

    async def submit(self, call: TaskCall) -> None:
        pass

    async def status(self, task_id: str) -> TaskInfo | None:
        return None

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


async def test_a_backend_that_does_not_declare_delays_refuses_a_delayed_call() -> None:
    async with Offload(backend=ProtocolOnly()) as offload:
        with pytest.raises(NotOffloadable) as caught:
            await offload.options(delay=30).submit(jobs.stamp, "/dev/null")
        await offload.submit(jobs.stamp, "/dev/null")  # no delay: sent
    assert str(caught.value) == (
        "cannot send tests.backends.control_jobs.stamp to the mine backend with delay=/at=: that "
        "backend does not declare that it holds a call until its due time (`delays = True`), "
        'so it would run the task at once. Run it on a local lane (tasks.options(lane="thread"'
        ", delay=...)), or use a backend that schedules calls (celery, rq)"
    )


async def test_a_delayed_call_reaches_the_backend_with_its_due_time() -> None:
    backend = RecordingBackend()
    async with Offload(backend=backend) as offload:
        handle = await offload.options(delay=30).submit(jobs.stamp, "/dev/null")
        info = await offload.status(handle.id)
    [call] = backend.calls
    assert call.due_at is not None and call.due_at > time.time() + 25
    assert (info.state, info.due_at) == (TaskState.SCHEDULED, call.due_at)


def test_celery_with_a_redis_broker_refuses_a_delay_past_its_visibility_timeout() -> None:
    # Redis hands an eta task no worker acknowledged within the visibility timeout to
    # another worker: it would run twice.
    settings: dict[str, Any] = {"broker_url": "redis://127.0.0.1:1/0"}
    backend = CeleryBackend(**settings)
    call = call_of(jobs.stamp, "/dev/null")
    backend.prepare(delayed(call, 3000))
    with pytest.raises(NotOffloadable, match=r"visibility_timeout \(3600 s\)"):
        backend.prepare(delayed(call, 4000))
    options = {"broker_transport_options": {"visibility_timeout": 7200}}
    CeleryBackend(**settings, config=options).prepare(delayed(call, 4000))


async def test_the_default_runtime_sends_a_delayed_remote_task() -> None:
    # Refused on the local lanes without a lifespan (the request would wait until due);
    # a remote task is sent before the response, and its backend holds it.
    backend = RecordingBackend()
    runtime = Runtime(OffloadConfig.resolve({}), backend)
    runtime.attach()
    record = runtime.admit(jobs.stamp, ("/dev/null",), {}, TaskSettings(delay=30))
    assert isinstance(record, TaskRecord)  # a handle only for a key some task holds
    await runtime.commit([record])
    [call] = backend.calls
    assert call.due_at is not None and call.due_at == record.due_at


async def test_the_inline_backend_runs_a_delayed_task_at_once(tmp_path: Path) -> None:
    # A test double: like a retry's wait, a delay is noted (on the call), not slept.
    out = tmp_path / "stamps"
    backend = InlineBackend()
    async with Offload(backend=backend) as offload:
        handle = await offload.options(delay=3600).submit(jobs.stamp, str(out))
        info = await offload.status(handle.id)
    assert info.state is TaskState.SUCCEEDED and len(stamps(out)) == 1
    [call] = backend.calls
    assert call.due_at is not None and call.due_at > time.time() + 3000
