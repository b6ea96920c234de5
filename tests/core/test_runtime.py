"""The runtime with a durable store: write-ahead in the request, and its errors."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from fastapi import FastAPI

from fastapi_offload import (
    ConfigError,
    NotOffloadable,
    Offload,
    OffloadClosed,
    OffloadTasks,
    TaskCall,
    TaskInfo,
    TaskState,
    task,
)
from fastapi_offload.testing import RecordingBackend

from ..apps import jobs
from ..helpers import serve

pytestmark = pytest.mark.anyio


def app_for(offload: Offload) -> FastAPI:
    app = FastAPI(lifespan=offload.lifespan)

    @app.post("/", status_code=202)
    async def endpoint(tasks: OffloadTasks) -> str:
        return tasks.add_task(jobs.nap, 0).id

    return app


async def test_a_task_is_in_the_file_before_the_response(tmp_path: Path) -> None:
    db = tmp_path / "offload.db"
    offload = Offload(store=f"sqlite:///{db}")
    app = FastAPI(lifespan=offload.lifespan)
    seen: list[object] = []

    @app.post("/", status_code=202)
    async def endpoint(tasks: OffloadTasks) -> str:
        return tasks.add_task(jobs.nap, 0).id

    async with serve(app, offload) as client:
        response = await client.post("/")
        # Read with a connection of our own the moment the response arrives.
        with sqlite3.connect(db) as raw:
            seen = raw.execute("SELECT id FROM tasks WHERE id = ?", (response.json(),)).fetchall()
        await offload.join()
        assert (await offload.status(response.json())).state is TaskState.SUCCEEDED
    assert seen == [(response.json(),)]


async def test_a_store_that_cannot_write_is_a_503_and_the_api_recovers(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    offload = Offload(store=f"sqlite:///{folder / 'offload.db'}")
    async with serve(app_for(offload), offload) as client:
        assert (await client.post("/")).status_code == 202
        shutil.rmtree(folder)  # the disk is gone from under the app
        response = await client.post("/")
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        detail = response.json()["detail"]
        assert "could not record the task" in detail and str(folder) not in detail
        folder.mkdir()
        # The store's breaker lets a probe through after a second: then it accepts again.
        await anyio.sleep(1.2)
        assert (await client.post("/")).status_code == 202
        await offload.join()
        assert offload.stats().lanes["thread"].waiting == 0


async def test_a_store_path_that_cannot_be_used_fails_at_startup(tmp_path: Path) -> None:
    offload = Offload(store=f"sqlite:///{tmp_path / 'missing' / 'offload.db'}")
    with pytest.raises(ConfigError, match="OFFLOAD_STORE"):
        async with offload:
            pass


async def test_requeue_tasks_must_pickle(tmp_path: Path) -> None:
    async with Offload(store=f"sqlite:///{tmp_path / 'o.db'}") as offload:
        with pytest.raises(NotOffloadable, match="requeue=True"):
            await offload.submit(jobs.sleep_then_append, 0, lambda: 1)  # type: ignore[arg-type]
        await offload.join()


async def test_the_default_runtime_refuses_a_durable_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFLOAD_STORE", f"sqlite:///{tmp_path / 'o.db'}")
    app = FastAPI()

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        tasks.add_task(jobs.nap, 0)

    async with serve(app) as client:
        with pytest.raises(ConfigError, match="needs the Offload lifespan"):
            await client.post("/")


@task(requeue=True)
async def slow_to_stop(seconds: float) -> None:
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)  # a cleanup longer than the shutdown's grace


async def test_a_task_abandoned_at_shutdown_is_recorded_and_never_run_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found in review: its end came after the store had closed, so the row stayed
    # `running` and the next process ran the task again.
    store = f"sqlite:///{tmp_path / 'o.db'}"
    first = Offload(store=store, shutdown_timeout=0.5, store_lease=0.3)
    async with first:
        handle = await first.options(requeue=True).submit(slow_to_stop, 0.3)
    await asyncio.sleep(0.4)  # its cleanup ends after the shutdown, and is not recorded
    async with Offload(store=store, store_lease=0.3) as second:
        info = await second.status(handle.id)
    assert info.state is TaskState.CANCELLED and "abandoned" in (info.error or "")
    assert "is run again" not in caplog.text


class SlowPublish(RecordingBackend):
    """Publishes from a worker thread, as the Celery and RQ backends do."""

    async def submit(self, call: TaskCall) -> None:
        await anyio.to_thread.run_sync(time.sleep, 0.2)
        await super().submit(call)

    async def status(self, task_id: str) -> TaskInfo | None:
        return None  # nothing to vouch for: what the web process recorded is all there is


async def test_a_send_cancelled_natively_is_not_discarded() -> None:
    # Found in review: `asyncio.wait_for` (or a server's forced shutdown) cancels with a
    # plain `task.cancel()`, which an anyio shield does not stop.
    backend = SlowPublish()
    async with Offload(backend=backend) as offload:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(offload.submit(jobs.write, "/dev/null", "x"), 0.05)
        with anyio.fail_after(5):
            await offload.join()  # returns once the send has ended
        [call] = backend.calls
        info = await offload.status(call.id)
    assert info.state is TaskState.PENDING and info.lane == "recording"


async def test_a_durable_offload_whose_lifespan_was_forgotten_fails_at_the_first_request(
    tmp_path: Path,
) -> None:
    # Was: every POST answered 202 with the tasks in memory, the status router said
    # `succeeded` and `offload.status` said `unknown` (logging "no such table: tasks").
    offload = Offload(store=f"sqlite:///{tmp_path / 'o.db'}")
    app = FastAPI()  # lifespan=offload.lifespan forgotten
    app.include_router(offload.status_router())

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        tasks.add_task(jobs.nap, 0)

    async with serve(app) as client:
        with pytest.raises(ConfigError, match="its lifespan never ran"):
            await client.post("/")
        with pytest.raises(ConfigError, match=r"lifespan=offload\.lifespan"):
            await client.get("/tasks/some-id")
    with pytest.raises(OffloadClosed, match="was never opened"):
        await offload.status("some-id")
    with pytest.raises(OffloadClosed, match="was never opened"):
        await offload.cancel("some-id")
    async with offload.lifespan(app), serve(app) as client:  # with it: all is well
        assert (await client.post("/")).status_code == 200
        assert (await client.get("/tasks/some-id")).status_code == 404
