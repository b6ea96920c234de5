"""A test app for delayed tasks under a real server, its store from OFFLOAD_STORE: kill -9,
graceful stops and restarts, and two servers sharing one store."""

from __future__ import annotations

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks

from . import delayed_jobs
from .probes import probes

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(probes)
app.include_router(offload.status_router(cancel=True, public=True))


@app.post("/later", status_code=202)
async def later(tasks: OffloadTasks, delay: float, path: str) -> dict[str, str]:
    """The docs' shape: answer at once with the id; the task runs `delay` s later."""
    handle = tasks.options(delay=delay).add_task(delayed_jobs.stamp, path)
    return {"id": handle.id}
