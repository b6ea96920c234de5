"""The request boundary (`web/dependency.py` with the runtime): nothing lost or duplicated.

Numbered behaviours of the core rebuild: (3) nothing lost or duplicated at the request
boundary, (4) websocket tasks on the default runtime start when added.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient

from fastapi_offload import (
    BackendUnavailable,
    NotOffloadable,
    Offload,
    OffloadTasks,
    TaskCall,
    TaskInfo,
    TaskState,
)
from fastapi_offload.testing import RecordingBackend

from ..apps import jobs
from ..helpers import lines, serve

pytestmark = pytest.mark.anyio


class FailsAfter(RecordingBackend):
    """A broker that accepts `accept` tasks, then is down."""

    def __init__(self, accept: int) -> None:
        super().__init__()
        self.accept = accept

    async def submit(self, call: TaskCall) -> None:
        if len(self.calls) >= self.accept:
            raise BackendUnavailable(f"broker down; {call.name} (id {call.id}) was not submitted")
        await super().submit(call)


class SlowAck(RecordingBackend):
    """A broker that has the task at once and acknowledges it late."""

    def __init__(self) -> None:
        super().__init__()
        self.has_it = anyio.Event()

    async def submit(self, call: TaskCall) -> None:
        await super().submit(call)
        self.has_it.set()
        await anyio.sleep(0.3)

    async def status(self, task_id: str) -> TaskInfo | None:
        return None  # cannot vouch for any id: what we recorded is all there is


def remote_app(offload: Offload, count: int) -> FastAPI:
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router())

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> list[str]:
        return [tasks.add_task(jobs.write, "/dev/null", str(i)).id for i in range(count)]

    return app


async def test_a_broker_failing_part_way_says_which_tasks_were_accepted() -> None:
    backend = FailsAfter(accept=1)
    offload = Offload(backend=backend)
    async with serve(remote_app(offload, 3), offload) as client:
        response = await client.post("/")
        assert response.status_code == 503
        detail = response.json()["detail"]
        [accepted] = backend.calls
        assert (
            f"accepted before the failure and will run: tests.apps.jobs.write (id {accepted.id})"
            in detail
        )
        assert "not sent:" in detail and "Retry only the tasks not sent" in detail
        # The accepted one is the broker's; the two not sent were never accepted.
        assert (await client.get(f"/tasks/{accepted.id}")).json()["state"] == "pending"
        assert offload.stats().statuses_kept == 1
        await offload.join()  # nothing left waiting


async def test_a_broker_down_for_the_first_task_sends_none() -> None:
    backend = FailsAfter(accept=0)
    offload = Offload(backend=backend)
    async with serve(remote_app(offload, 2), offload) as client:
        response = await client.post("/")
        assert response.status_code == 503
        assert "broker down" in response.json()["detail"]
        assert "accepted before the failure" not in response.json()["detail"]
        assert backend.calls == [] and offload.stats().statuses_kept == 0


async def test_every_remote_call_is_checked_before_any_is_sent() -> None:
    backend = RecordingBackend()
    offload = Offload(backend=backend)
    app = FastAPI(lifespan=offload.lifespan)

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        tasks.add_task(jobs.write, "/dev/null", "fine")
        tasks.add_task(jobs.write, "/dev/null", object())  # type: ignore[arg-type]  # not JSON

    async with serve(app, offload) as client:
        with pytest.raises(NotOffloadable, match="argument 1"):
            await client.post("/")
    assert backend.calls == []


async def test_a_cancelled_request_never_unsends_a_task_the_broker_has() -> None:
    backend = SlowAck()
    offload = Offload(backend=backend)
    ids: list[str] = []
    app = FastAPI(lifespan=offload.lifespan)

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        ids.append(tasks.add_task(jobs.write, "/dev/null", "x").id)

    async with serve(app, offload) as client:
        async with anyio.create_task_group() as group:
            group.start_soon(client.post, "/")
            await backend.has_it.wait()
            group.cancel_scope.cancel()  # the client went away mid-submit
        await offload.join()
        info = await offload.status(ids[0])
    assert [call.id for call in backend.calls] == ids
    assert info.state is TaskState.PENDING and info.lane == "recording"


async def test_a_remote_task_added_after_the_response_is_sent() -> None:
    backend = RecordingBackend()
    offload = Offload(backend=backend)
    app = FastAPI(lifespan=offload.lifespan)
    kept: list[Any] = []

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        kept.append(tasks)  # used after the request ended

    async with serve(app, offload) as client:
        await client.post("/")
        handle = kept[0].add_task(jobs.write, "/dev/null", "late")
        with anyio.fail_after(5):
            await offload.join()  # returns: the task is sent, not left in a list
    assert [call.id for call in backend.calls] == [handle.id]


async def failing_teardown() -> AsyncIterator[None]:
    yield
    raise RuntimeError("teardown failed after the response")


async def test_tasks_of_an_endpoint_that_returned_run_when_a_teardown_raises(
    tmp_path: Path,
) -> None:
    # The client heard 200 with the ids: the tasks were accepted and run, as
    # BackgroundTasks ran them before that teardown.
    offload = Offload()
    app = FastAPI(lifespan=offload.lifespan)
    out = tmp_path / "out.txt"
    ids: list[str] = []

    @app.post("/")
    async def endpoint(tasks: OffloadTasks, _: Annotated[None, Depends(failing_teardown)]) -> None:
        ids.append(tasks.add_task(jobs.write, str(out), "ran").id)

    async with serve(app, offload) as client:
        with pytest.raises(RuntimeError, match="teardown failed"):
            await client.post("/")
        await offload.join()
        assert (await offload.status(ids[0])).state is TaskState.SUCCEEDED
    assert lines(out)[0].startswith("ran")


async def test_tasks_of_an_endpoint_that_raised_never_run(tmp_path: Path) -> None:
    offload = Offload()
    app = FastAPI(lifespan=offload.lifespan)
    ids: list[str] = []

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        ids.append(tasks.add_task(jobs.write, str(tmp_path / "out"), "x").id)
        raise RuntimeError("endpoint failed")

    async with serve(app, offload) as client:
        with pytest.raises(RuntimeError, match="endpoint failed"):
            await client.post("/")
        await offload.join()
        assert (await offload.status(ids[0])).state is TaskState.UNKNOWN
        assert offload.stats().lanes["thread"].waiting == 0
    assert not (tmp_path / "out").exists()


async def test_a_task_that_cannot_start_after_the_response_is_failed_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    offload = Offload(shutdown_timeout=0.1)
    app = FastAPI()
    entered, release = anyio.Event(), anyio.Event()
    ids: list[str] = []

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        ids.append(tasks.add_task(jobs.nap, 0).id)
        entered.set()
        await release.wait()

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        async with anyio.create_task_group() as group:
            lifespan = offload.lifespan(app)
            await lifespan.__aenter__()
            group.start_soon(client.post, "/")
            await entered.wait()
            await lifespan.__aexit__(None, None, None)  # shuts down mid-request
            release.set()
    info = await offload.status(ids[0])
    assert info.state is TaskState.FAILED
    assert "could not start" in (info.error or "")
    [failure] = [r for r in caplog.records if ids[0] in r.getMessage()]
    assert failure.levelname == "ERROR" and "tests.apps.jobs.nap" in failure.getMessage()


def test_websocket_tasks_on_the_default_runtime_start_when_added(tmp_path: Path) -> None:
    app = FastAPI()  # no lifespan: the default runtime
    out = tmp_path / "out.txt"

    @app.websocket("/ws")
    async def websocket(socket: WebSocket, tasks: OffloadTasks) -> None:
        await socket.accept()
        tasks.add_task(jobs.write, str(out), await socket.receive_text())
        await socket.receive_text()  # the client answers once it has seen the task run

    with TestClient(app) as client, client.websocket_connect("/ws") as socket:
        socket.send_text("first")
        deadline = time.monotonic() + 10
        while not out.exists():  # before the client leaves: the task started when added
            assert time.monotonic() < deadline, "the task did not start while connected"
            time.sleep(0.02)
        socket.send_text("seen")
    assert lines(out)[0].startswith("first")


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
