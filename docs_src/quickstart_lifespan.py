from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks, cpu_bound

offload = Offload()  # options: keyword arguments, else OFFLOAD_* variables
app = FastAPI(lifespan=offload.lifespan)  # starts the lanes, drains them on shutdown
app.include_router(offload.status_router())  # GET /tasks/{task_id}


@cpu_bound  # a worker process runs it: CPU work there does not slow the API
def make_thumbnail(image_id: int, *, size: int = 256) -> None:
    out = Path(os.environ.get("MEDIA_DIR") or tempfile.gettempdir())
    pixels = bytes((x * image_id) % 256 for x in range(size * size))  # your real work here
    (out / f"thumbnail-{image_id}.pgm").write_bytes(b"P5 %d %d 255\n" % (size, size) + pixels)


@app.post("/images/{image_id}", status_code=202)
async def upload(image_id: int, tasks: OffloadTasks) -> dict[str, str]:
    handle = tasks.add_task(make_thumbnail, image_id, size=128)
    return {"task_id": handle.id}
