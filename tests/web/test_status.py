"""The status router (`web/status.py`): `GET /tasks/{id}/events`, the Server-Sent Events
stream of a task's status; cancel through a store shared by two servers; the cancel route
and the router's dependencies."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request

from fastapi_offload import Offload, TaskState

from ..apps import progress_jobs as jobs
from ..conftest import StartServer
from ..helpers import serve


def parse(stream: str) -> list[tuple[str, str | None, dict[str, object]]]:
    """(event, id, data) of each event in an SSE body; comments and `retry:` skipped."""
    events = []
    for block in stream.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], fields.get("id"), json.loads(fields["data"])))
    return events


@pytest.mark.anyio
async def test_the_stream_sends_each_change_then_ends() -> None:
    offload = Offload(keep_result=True)
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router())
    async with serve(app, offload) as client:
        handle = await offload.options(lane="thread").submit(jobs.report_steps, 4, 0.3)
        response = await client.get(f"/tasks/{handle.id}/events")
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache, no-transform"
        assert response.text.startswith("retry: 1000\n\n")
        events = parse(response.text)
        again = await client.get(f"/tasks/{handle.id}/events", headers={"last-event-id": "end"})
        unknown = await client.get(f"/tasks/{'0' * 32}/events")
    names = [name for name, _, _ in events]
    assert names[-1] == "end" and set(names[:-1]) == {"status"}
    assert events[-1][1] == "end" and events[-1][2] == {"state": "succeeded"}
    statuses = [data for name, _, data in events if name == "status"]
    progress = [s["progress"] for s in statuses]
    # Every step was seen, in order, and nothing was sent twice.
    assert [p for p in progress if p is not None] == [0.25, 0.5, 0.75, 1.0]
    assert statuses[-1]["state"] == "succeeded" and statuses[-1]["result"] == 4
    assert again.status_code == 204  # EventSource stops reconnecting
    assert unknown.status_code == 404 and unknown.json()["state"] == "unknown"


def test_events_arrive_while_a_process_task_runs(start_server: StartServer) -> None:
    server = start_server("tests.apps.progress_app:app")
    with server.client() as client:
        task_id = client.post("/steps", params={"steps": 5, "pause": 0.4}).json()
        seen: list[tuple[float, dict[str, object]]] = []
        with client.stream("GET", f"/tasks/{task_id}/events") as response:
            buffer = ""
            for chunk in response.iter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    for name, _, data in parse(block + "\n\n"):
                        seen.append((time.monotonic(), {"event": name, **data}))
    statuses = [data for _, data in seen if data["event"] == "status"]
    end_at = next(at for at, data in seen if data["event"] == "end")
    running = [(at, d) for at, d in seen if d.get("state") == "running" and d.get("progress")]
    # Progress crossed from the worker process while the task ran, not at its end.
    assert len({d["progress"] for _, d in running}) >= 3, statuses
    assert end_at - running[0][0] > 0.5
    assert statuses[-1]["state"] == "succeeded" and statuses[-1]["progress"] == 1.0


def test_a_cancel_sent_to_another_worker_stops_the_task_within_a_second(
    start_server: StartServer, tmp_path: Path
) -> None:
    env = {"OFFLOAD_STORE": f"sqlite:///{tmp_path / 'tasks.db'}"}
    owner = start_server("tests.apps.progress_app:app", env=env)
    other = start_server("tests.apps.progress_app:app", env=env)
    left = tmp_path / "left"
    with owner.client() as a, other.client() as b:
        assert a.get("/pid").json() != b.get("/pid").json()
        task_id = a.post("/sleep", params={"seconds": 60, "path": str(left)}).json()
        owner.wait_for_state(task_id, {"running"})
        asked = time.monotonic()
        response = b.delete(f"/tasks/{task_id}")
        assert response.status_code == 202, response.text
        body = other.wait_for_state(task_id, {"cancelled"}, timeout=10)
        took = time.monotonic() - asked
    assert body["error"] == "cancelled by request"
    assert left.read_text() == "left"  # the owner's task ran its `finally`
    assert took < 3, took  # polled twice a second by the owner (order of magnitude)
    with other.client() as b:
        assert b.delete(f"/tasks/{task_id}").status_code == 409


# -- the cancel route ---------------------------------------------------------------------

BY_REQUEST = "cancelled by request"


def admin(request: Request) -> None:
    if request.headers.get("x-admin") != "yes":
        raise HTTPException(403, "admins only")


def app_for(offload: Offload, **options: Any) -> FastAPI:
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router(**options))
    return app


@pytest.mark.anyio
async def test_the_router_has_no_cancel_route_unless_asked() -> None:
    offload = Offload()
    async with serve(app_for(offload), offload) as client:
        handle = await offload.submit(jobs.wait_for, "/nonexistent", 0.2)
        response = await client.delete(f"/tasks/{handle.id}")
        await offload.join()
    assert response.status_code == 405
    assert (await offload.status(handle.id)).state is TaskState.SUCCEEDED


@pytest.mark.anyio
async def test_the_cancel_route_answers_202_404_and_409(tmp_path: Path) -> None:
    offload = Offload()
    app = app_for(offload, cancel=True, cancel_dependencies=[Depends(admin)])
    async with serve(app, offload) as client:
        handle = await offload.submit(jobs.sleep_async, 30, str(tmp_path / "left"))
        refused = await client.delete(f"/tasks/{handle.id}")
        assert refused.status_code == 403
        assert (await client.get(f"/tasks/{handle.id}")).status_code == 200  # reads are open
        admitted: dict[str, str] = {"x-admin": "yes"}
        accepted = await client.delete(f"/tasks/{handle.id}", headers=admitted)
        await offload.join()
        again = await client.delete(f"/tasks/{handle.id}", headers=admitted)
        unknown = await client.delete(f"/tasks/{'0' * 32}", headers=admitted)
    assert accepted.status_code == 202
    assert accepted.json()["id"] == handle.id
    assert (again.status_code, again.json()["state"], again.json()["error"]) == (
        409,
        "cancelled",
        BY_REQUEST,
    )
    assert (unknown.status_code, unknown.json()["state"]) == (404, "unknown")


@pytest.mark.anyio
async def test_router_dependencies_protect_every_route() -> None:
    offload = Offload()
    app = app_for(offload, cancel=True, dependencies=[Depends(admin)])
    async with serve(app, offload) as client:
        handle = await offload.submit(jobs.answer, 1)
        await offload.join()
        assert (await client.get(f"/tasks/{handle.id}")).status_code == 403
        assert (await client.get(f"/tasks/{handle.id}/events")).status_code == 403
        ok = await client.get(f"/tasks/{handle.id}", headers={"x-admin": "yes"})
    assert ok.status_code == 200
    assert isinstance(client, httpx.AsyncClient)
