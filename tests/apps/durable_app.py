"""A test app with its store from OFFLOAD_STORE: for kill -9, restart and --workers N."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

from fastapi_offload import Offload, OffloadTasks

from . import jobs
from .probes import probes

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(probes)
app.include_router(offload.status_router())


@app.middleware("http")
async def name_the_worker(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers["x-worker-pid"] = str(os.getpid())  # which process answered
    return response


@app.post("/nap", status_code=202)
async def nap(tasks: OffloadTasks, seconds: float, count: int = 1) -> list[str]:
    return [tasks.add_task(jobs.nap, seconds).id for _ in range(count)]


@app.post("/requeue", status_code=202)
async def requeue(tasks: OffloadTasks, seconds: float, path: str) -> str:
    return tasks.add_task(jobs.sleep_then_append, seconds, path).id


@app.post("/requeue-first", status_code=202)
async def requeue_first(tasks: OffloadTasks, seconds: float, path: str) -> str:
    return tasks.add_task(jobs.append_then_sleep, seconds, path).id


@app.post("/requeue-crash", status_code=202)
async def requeue_crash(tasks: OffloadTasks, path: str) -> str:
    return tasks.add_task(jobs.append_then_crash, path).id


@app.post("/keyed", status_code=202)
async def keyed(tasks: OffloadTasks, response: Response, key: str, path: str) -> dict[str, Any]:
    """One run per key: a retried POST answers 200 with the id of the task it started."""
    handle = tasks.options(key=key).add_task(jobs.write, path, key)
    if handle.existing:
        response.status_code = 200
    return {"id": handle.id, "existing": handle.existing}
