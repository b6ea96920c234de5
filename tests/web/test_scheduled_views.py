"""A scheduled task (`options(delay=...)`) on the dashboard and in the metrics: shown as
`scheduled` (live, with its due time; another process's too, through a shared store),
counted by the `tasks_scheduled` gauge, and its queue wait counted from its due time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from fastapi_offload import Offload, TaskState

from ..apps.delayed_jobs import stamp
from ..helpers import serve

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def app_of(offload: Offload) -> FastAPI:
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.dashboard_router(public=True))
    app.include_router(offload.metrics_router())
    return app


async def test_the_dashboard_and_the_metrics_show_a_scheduled_task(tmp_path: Path) -> None:
    offload = Offload()
    async with serve(app_of(offload), offload) as client:
        handle = await offload.options(delay=60).submit(stamp, str(tmp_path / "out"))
        shown: dict[str, Any] = (await client.get("/offload/snapshot")).json()
        scheduled = samples((await client.get("/metrics")).text)
        assert await offload.cancel(handle.id)
        await offload.join()
        after = samples((await client.get("/metrics")).text)
    [task] = shown["tasks"]
    assert (task["id"], task["state"], task["live"]) == (handle.id, "scheduled", True)
    assert task["due_at"] is not None and task["duration"] is None
    thread = next(lane for lane in shown["lanes"] if lane["name"] == "thread")
    assert (thread["scheduled"], thread["waiting"]) == (1, 0)
    gauge = "fastapi_offload_tasks_scheduled"
    assert scheduled[gauge, (("lane", "thread"),)] == 1
    assert scheduled["fastapi_offload_tasks_waiting", (("lane", "thread"),)] == 0
    assert scheduled["fastapi_offload_tasks_admitted_total", (("lane", "thread"),)] == 1
    assert after[gauge, (("lane", "thread"),)] == 0
    assert after["fastapi_offload_tasks_total", (("lane", "thread"), ("state", "cancelled"))] == 1


async def test_the_queue_wait_of_a_delayed_task_counts_from_its_due_time(tmp_path: Path) -> None:
    offload = Offload()
    async with serve(app_of(offload), offload) as client:
        await offload.options(delay=0.6).submit(stamp, str(tmp_path / "out"))
        await offload.join()
        found = samples((await client.get("/metrics")).text)
    lane = (("lane", "thread"),)
    assert found["fastapi_offload_task_wait_seconds_count", lane] == 1
    # Not the 0.6 s it was scheduled for: it started (well) within the half second.
    assert found["fastapi_offload_task_wait_seconds_sum", lane] < 0.5


async def test_another_process_s_scheduled_task_shows_live_on_a_shared_dashboard(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'offload.db'}"
    owner, viewer = Offload(store=store), Offload(store=store)
    async with owner, serve(app_of(viewer), viewer) as client:
        handle = await owner.options(delay=60).submit(stamp, str(tmp_path / "out"))
        shown: dict[str, Any] = (await client.get("/offload/snapshot")).json()
        assert await viewer.cancel(handle.id)  # the owner sees it within a second
        for _ in range(250):
            if (await owner.status(handle.id)).state is TaskState.CANCELLED:
                break
            await anyio.sleep(0.02)
        assert (await owner.status(handle.id)).state is TaskState.CANCELLED
    [task] = [t for t in shown["tasks"] if t["id"] == handle.id]
    assert (task["state"], task["live"], task["here"]) == ("scheduled", True, False)
