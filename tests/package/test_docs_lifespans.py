"""docs/lifespans.md: docs_src/lifespans_app.py run both ways, and what the page claims."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from docs_src import lifespans_app as example
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_offload import Offload, OffloadTasks


def unique(prefix: str) -> str:
    # REPORTS is shared by every test of this module: each looks for its own entry.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def join(client: TestClient, offload: Offload) -> None:
    assert client.portal is not None, "only inside `with TestClient(app) as client:`"
    client.portal.call(offload.join)


@pytest.mark.parametrize("with_block", [False, True], ids=["no-with", "with"])
def test_without_a_lifespan_tasks_are_done_when_the_call_returns(with_block: bool) -> None:
    name = unique("plain")
    if with_block:
        with TestClient(example.plain) as client:
            response = client.post(f"/reports/{name}")
            assert name in example.REPORTS  # no join(): the request waited for its task
    else:
        response = TestClient(example.plain).post(f"/reports/{name}")
        assert name in example.REPORTS
    assert response.status_code == 202
    assert len(response.json()["task_id"]) == 32


def test_without_a_lifespan_the_status_is_kept_across_requests() -> None:
    # Inside `with`, the calls share one event loop, so one default runtime.
    name = unique("plain-status")
    with TestClient(example.plain) as client:
        task_id = client.post(f"/reports/{name}").json()["task_id"]
        status = client.get(f"/tasks/{task_id}")
    assert status.status_code == 200
    info = status.json()
    assert info["state"] == "succeeded", info
    assert info["lane"] == "thread"


def test_with_the_lifespan_the_status_is_kept_across_requests() -> None:
    name = unique("status")
    with TestClient(example.app) as client:
        response = client.post(f"/reports/{name}")
        assert response.status_code == 202
        task_id = response.json()["task_id"]
        join(client, example.offload)
        status = client.get(f"/tasks/{task_id}")
    assert status.status_code == 200
    info = status.json()
    assert info["state"] == "succeeded", info
    assert info["lane"] == "thread"
    assert info["name"] == "docs_src.lifespans_app.build_report"
    assert name in example.REPORTS


def test_leaving_the_lifespan_drains_the_tasks() -> None:
    name = unique("drain")
    with TestClient(example.app) as client:
        assert client.post(f"/reports/{name}").status_code == 202
        # No join(): the lifespan's shutdown, at the end of the block, drains the task.
    assert name in example.REPORTS


def test_testclient_without_with_does_not_run_the_lifespan() -> None:
    # The page: requests fall back to a default runtime, which runs the task inside
    # the request, so it is done when the call returns.
    name = unique("no-lifespan")
    assert TestClient(example.app).post(f"/reports/{name}").status_code == 202
    assert name in example.REPORTS


GATE = threading.Event()


def wait_for_gate() -> None:
    if not GATE.wait(10):  # bounded: a broken runtime fails the test instead of hanging
        raise TimeoutError("the gate was never opened")


def test_with_the_lifespan_the_request_ends_before_its_task() -> None:
    offload = Offload()
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router())

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> str:
        return tasks.add_task(wait_for_gate).id

    GATE.clear()
    with TestClient(app) as client:
        task_id = client.post("/").json()
        # The response came back while the task still waits for the gate: detached.
        assert client.get(f"/tasks/{task_id}").json()["state"] in ("pending", "running")
        GATE.set()
        join(client, offload)
        assert client.get(f"/tasks/{task_id}").json()["state"] == "succeeded"


@pytest.mark.parametrize("composed", [False, True], ids=["offload-lifespan", "own-lifespan"])
def test_mounted_apps_find_the_runtime(composed: bool) -> None:
    offload = Offload()

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[Any]:
        async with offload.lifespan(app) as state:
            yield state  # as the page says: keep the lifespan state for mounted apps

    main = FastAPI(lifespan=own if composed else offload.lifespan)
    mounted = FastAPI()
    mounted.include_router(example.router)
    main.mount("/mounted", mounted)

    name = unique("mounted")
    with TestClient(main) as client:
        task_id = client.post(f"/mounted/reports/{name}").json()["task_id"]
        join(client, offload)
        assert client.portal is not None
        info = client.portal.call(offload.status, task_id)
    # Known to this Offload: the mounted app's request was served by it.
    assert info.state.value == "succeeded", info
    assert name in example.REPORTS
