from __future__ import annotations

import os
import time

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks

from .backend_template import SQLiteBackend

DATABASE = os.environ.get("TASKS_DB", "tasks.sqlite3")


def resize_image(image_id: int, width: int) -> None:
    time.sleep(0.01)  # stands in for the real work, done by the worker process


offload = Offload(backend=SQLiteBackend(DATABASE))
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())


@app.post("/images/{image_id}/resize", status_code=202)
async def resize(image_id: int, tasks: OffloadTasks) -> dict[str, str]:
    handle = tasks.add_task(resize_image, image_id, width=200)
    return {"task_id": handle.id}
