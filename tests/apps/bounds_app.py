"""The app of the bounds tests (error text, large results, worker lifetime), under a
real uvicorn. Configured by OFFLOAD_* variables (a SQLite store, result_max_bytes)."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks

from . import bounds_jobs

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())

Lane = Literal["loop", "thread", "process"]


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/raise-big")
async def raise_big(tasks: OffloadTasks, size: int, lane: Lane = "thread") -> dict[str, str]:
    return {"id": tasks.options(lane=lane).add_task(bounds_jobs.raise_big, size).id}


@app.post("/raise-secret")
async def raise_secret(tasks: OffloadTasks, lane: Lane = "thread") -> dict[str, str]:
    if lane == "loop":
        return {"id": tasks.add_task(bounds_jobs.raise_secret_async).id}
    return {"id": tasks.options(lane=lane).add_task(bounds_jobs.raise_secret).id}


@app.post("/large-result")
async def large_result(tasks: OffloadTasks, rows: int) -> dict[str, str]:
    task = tasks.options(lane="thread", keep_result=True)
    return {"id": task.add_task(bounds_jobs.large_result, rows).id}


@app.post("/sleep-then-write")
async def sleep_then_write(
    tasks: OffloadTasks, seconds: float, path: str, pid_file: str
) -> dict[str, str]:
    task = tasks.options(lane="process")
    return {"id": task.add_task(bounds_jobs.sleep_then_write, seconds, path, pid_file).id}


@app.post("/child-in-new-session")
async def child_in_new_session(
    tasks: OffloadTasks, pid_file: str, timeout: float
) -> dict[str, str]:
    task = tasks.options(lane="process", timeout=timeout)
    return {"id": task.add_task(bounds_jobs.child_in_new_session, pid_file).id}
