"""Edge cases found in review: each test failed before its fix."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_process
import pytest
from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient

from fastapi_offload import Offload, OffloadTasks, QueueFull, TaskState
from fastapi_offload.testing import RecordingBackend

from .apps import jobs
from .helpers import lines, serve

pytestmark = pytest.mark.anyio


async def remote_in_teardown(tasks: OffloadTasks) -> AsyncIterator[None]:
    yield
    # After the response: too late for a 503, the task goes the late way.
    tasks.options(lane="remote").add_task(jobs.write, "/dev/null", "late")


async def test_a_broker_error_after_the_response_loses_no_local_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RecordingBackend()
    backend.available = False
    offload = Offload(backend=backend, routes={"tests.apps.jobs.write": "thread"})
    app = FastAPI(lifespan=offload.lifespan)
    out = tmp_path / "out.txt"

    @app.post("/")
    async def endpoint(
        _: Annotated[None, Depends(remote_in_teardown)], tasks: OffloadTasks
    ) -> None:
        tasks.add_task(jobs.write, str(out), "local")

    async with serve(app, offload) as client:
        assert (await client.post("/")).status_code == 200
        with anyio.fail_after(10):
            await offload.join()
        assert offload.stats().lanes["thread"].waiting == 0
        assert lines(out)[0].startswith("local")
        # The late remote task is failed with the reason, logged by name and id.
        [failure] = [r for r in caplog.records if "could not be sent" in r.getMessage()]
        assert failure.levelname == "ERROR"
        assert isinstance(failure.args, tuple)
        name, task_id = failure.args[:2]
        assert name == "tests.apps.jobs.write"
        info = await offload.status(str(task_id))
        assert info.state is TaskState.FAILED
        assert "recording backend is set unavailable" in (info.error or "")


def test_websocket_tasks_run_when_the_client_disconnects(tmp_path: Path) -> None:
    offload = Offload()
    app = FastAPI(lifespan=offload.lifespan)
    out = tmp_path / "out.txt"

    @app.websocket("/ws")
    async def websocket(socket: WebSocket, tasks: OffloadTasks) -> None:
        await socket.accept()
        while True:  # ends with WebSocketDisconnect, as websocket handlers do
            tasks.add_task(jobs.write, str(out), await socket.receive_text())

    with TestClient(app) as client:
        # TestClient re-raises the handler's WebSocketDisconnect when the session ends.
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws") as socket:
            socket.send_text("first")
            socket.send_text("second")
        client.portal.call(offload.join)  # type: ignore[union-attr]  # set inside `with`
    assert sorted(line.split()[0] for line in lines(out)) == ["first", "second"]


async def test_max_pending_bounds_running_coroutines_too() -> None:
    async with Offload(max_pending=2) as offload:
        await offload.submit(jobs.async_sleep, 0.3)
        await offload.submit(jobs.async_sleep, 0.3)
        # Counted whether they have started yet or not: no wait needed here.
        with pytest.raises(QueueFull, match="2 tasks waiting or running"):
            await offload.submit(jobs.async_sleep, 0.3)
        await offload.join()


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


async def test_closures_are_not_kept_alive_by_the_routing_cache() -> None:
    class Payload:
        pass

    payload = Payload()
    alive = weakref.ref(payload)

    def make(data: Any) -> Any:
        # async: a thread would hold its last function until its next job (anyio's
        # worker threads do), which is not what this test is about.
        async def job() -> None:
            assert data is not None

        return job

    async with Offload() as offload:
        await offload.submit(make(payload))
        await offload.join()
        await anyio.sleep(0.01)  # the task's done-callback drops its record
        del payload
        gc.collect()
        assert alive() is None


async def test_worker_logs_of_other_to_process_calls_are_not_collected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = anyio.CapacityLimiter(1)
    async with Offload(process_workers=1) as offload:
        await offload.submit(jobs.write_in_process, str(tmp_path / "a"), "one")
        await offload.join()
        # The same (only) worker, called directly: its log records are not ours.
        await anyio.to_process.run_sync(jobs.log_noise, 50, limiter=limiter)
        await offload.submit(jobs.write_in_process, str(tmp_path / "a"), "two")
        await offload.join()
    messages = [r.getMessage() for r in caplog.records if r.name == "tests.jobs"]
    assert messages == ["writing one from the worker", "writing two from the worker"]
