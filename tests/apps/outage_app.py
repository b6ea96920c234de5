"""A test app on the store OFFLOAD_STORE names, for a store that dies or freezes under it:
the status router, the dashboard (behind a dependency that lets everyone in) and a task."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from fastapi_offload import Offload, OffloadTasks

from . import jobs


def anyone() -> None:
    """The dashboard's guard in this test app: it lets every request in."""


offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())
app.include_router(offload.dashboard_router(dependencies=[Depends(anyone)]))


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/nap", status_code=202)
async def nap(tasks: OffloadTasks, seconds: float) -> str:
    return tasks.add_task(jobs.nap, seconds).id
