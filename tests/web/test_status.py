"""`GET /tasks/{id}/events`: the Server-Sent Events stream of a task's status, and cancel
through a store shared by two servers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi import FastAPI

from fastapi_offload import Offload

from .apps import progress_jobs as jobs
from .conftest import StartServer
from .helpers import serve


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
