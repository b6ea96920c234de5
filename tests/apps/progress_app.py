"""A test app for progress, live events and cancel under a real uvicorn (store from
OFFLOAD_STORE, so two servers can share one)."""

from __future__ import annotations

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks

from . import progress_jobs as jobs
from .probes import probes

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(probes)
app.include_router(offload.status_router(cancel=True, public=True))  # a test server


@app.post("/steps", status_code=202)
async def steps(tasks: OffloadTasks, steps: int, pause: float) -> str:
    return tasks.options(lane="process").add_task(jobs.report_steps, steps, pause).id


@app.post("/sleep", status_code=202)
async def sleep(tasks: OffloadTasks, seconds: float, path: str) -> str:
    return tasks.add_task(jobs.sleep_async, seconds, path).id
