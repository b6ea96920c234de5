"""Through FastAPI: POST -> 202 -> GET /tasks/{id}, with real and test backends."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI

from fastapi_offload import NotOffloadable, Offload, OffloadTasks
from fastapi_offload.backends.rq import RQBackend
from fastapi_offload.testing import InlineBackend, RecordingBackend

from ..helpers import serve
from . import jobs
from .conftest import WorkerProcess, backend_of

pytestmark = [
    pytest.mark.anyio,
    # Celery's Redis result backend (celery 5.7) stores states with `setex`, which
    # redis-py 8 deprecates; the warning comes from Celery's code, not ours.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]


def make_app(offload: Offload) -> FastAPI:
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router())

    @app.post("/whoami", status_code=202)
    async def whoami(path: str, tasks: OffloadTasks) -> dict[str, Any]:
        return {"id": tasks.add_task(jobs.whoami, path).id}

    @app.post("/bytes", status_code=202)
    async def send_bytes(tasks: OffloadTasks) -> dict[str, Any]:
        return {"id": tasks.add_task(jobs.whoami, path=b"not json").id}  # type: ignore[arg-type]  # the point

    return app


@pytest.mark.redis
@pytest.mark.redis
@pytest.mark.parametrize("kind", ["celery", "rq"])
async def test_post_202_then_the_status_reaches_succeeded(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    worker: WorkerProcess = request.getfixturevalue(f"{kind}_worker")
    url: str = request.getfixturevalue(f"{kind}_url")
    backend = backend_of(kind, url)
    offload = Offload(backend=backend)
    out = tmp_path / "pid.txt"
    async with serve(make_app(offload), offload) as client:
        response = await client.post("/whoami", params={"path": str(out)})
        assert response.status_code == 202, response.text
        task_id = response.json()["id"]
        deadline = time.monotonic() + 15
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = (await client.get(f"/tasks/{task_id}")).json()
            if body["state"] in ("succeeded", "failed"):
                break
            await anyio.sleep(0.05)
        assert body["state"] == "succeeded", f"{body}\n{worker.log()}"
        assert body["lane"] == kind and body["name"] == "tests.backends.jobs.whoami"
        assert int(out.read_text()) != os.getpid()
        unknown = await client.get(f"/tasks/{'0' * 32}")
        assert unknown.status_code == 404 and unknown.json()["state"] == "unknown"


async def test_a_broker_that_is_down_answers_503_with_the_reason(closed_port: int) -> None:
    offload = Offload(backend=RQBackend(redis_url=f"redis://127.0.0.1:{closed_port}/0"))
    async with serve(make_app(offload), offload) as client:
        response = await client.post("/whoami", params={"path": "x"})
        status = await client.get(f"/tasks/{'0' * 32}")
    assert response.status_code == 503
    assert f"127.0.0.1:{closed_port}" in response.json()["detail"]
    assert "was not submitted" in response.json()["detail"]
    assert "Retry-After" in response.headers
    assert status.status_code == 503


async def test_a_recording_backend_set_down_answers_503() -> None:
    backend = RecordingBackend()
    backend.available = False
    offload = Offload(backend=backend)
    async with serve(make_app(offload), offload) as client:
        response = await client.post("/whoami", params={"path": "x"})
    assert response.status_code == 503 and backend.calls == []


async def test_an_argument_that_cannot_travel_fails_the_request_by_name() -> None:
    offload = Offload(backend=RecordingBackend())
    async with serve(make_app(offload), offload) as client:
        with pytest.raises(NotOffloadable, match="argument 'path'"):
            await client.post("/bytes")


async def test_the_recording_backend_by_configuration_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OFFLOAD_BACKEND", "recording")
    offload = Offload()
    backend = offload.backend
    assert isinstance(backend, RecordingBackend)
    async with serve(make_app(offload), offload) as client:
        response = await client.post("/whoami", params={"path": "somewhere"})
        assert response.status_code == 202
        await offload.join()  # returns at once: the recorded task is the backend's now
        assert [call.args for call in backend.calls_to(jobs.whoami)] == [("somewhere",)]
        status = (await client.get(f"/tasks/{response.json()['id']}")).json()
    assert status["state"] == "pending" and status["lane"] == "recording"


async def test_the_inline_backend_runs_the_task_before_the_response(tmp_path: Path) -> None:
    backend = InlineBackend(jobs)
    offload = Offload(backend=backend)
    out = tmp_path / "pid.txt"
    async with serve(make_app(offload), offload) as client:
        response = await client.post("/whoami", params={"path": str(out)})
        assert response.status_code == 202 and out.exists()
        await offload.join()
        status = (await client.get(f"/tasks/{response.json()['id']}")).json()
    assert status["state"] == "succeeded" and status["lane"] == "inline"
