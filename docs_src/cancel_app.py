from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from fastapi_offload import Offload, OffloadTasks, cancelled, cpu_bound, io_bound

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
security = HTTPBasic()


def admin(credentials: Annotated[HTTPBasicCredentials, Depends(security)]) -> None:
    ok = secrets.compare_digest(credentials.username, "admin") and secrets.compare_digest(
        credentials.password,
        "change me",  # read it from your settings
    )
    if not ok:
        raise HTTPException(401, "admins only", headers={"WWW-Authenticate": "Basic"})


# GET /tasks/{id} for everyone; DELETE /tasks/{id} (cancel) for admins only.
app.include_router(offload.status_router(cancel=True, cancel_dependencies=[Depends(admin)]))


@cpu_bound
def transcode(video_id: int) -> None:
    time.sleep(30)  # stands in for ffmpeg: a cancel kills the worker and what it started


@io_bound
def export_rows(table: str) -> int:
    exported = 0
    for _ in range(3000):
        if cancelled():  # a thread cannot be interrupted: it checks between steps
            break
        time.sleep(0.01)  # stands in for fetching and writing one batch
        exported += 1
    return exported


@app.post("/videos/{video_id}/transcode", status_code=202)
async def start_transcode(video_id: int, tasks: OffloadTasks) -> dict[str, str]:
    return {"task_id": tasks.add_task(transcode, video_id).id}


@app.post("/exports/{table}", status_code=202)
async def start_export(table: str, tasks: OffloadTasks) -> dict[str, str]:
    return {"task_id": tasks.add_task(export_rows, table).id}


@app.post("/exports/{task_id}/stop")
async def stop_export(task_id: str, _: Annotated[None, Depends(admin)]) -> dict[str, bool]:
    return {"cancelled": await offload.cancel(task_id)}  # False: unknown, or already ended
