from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from fastapi_offload import Offload, OffloadTasks, cpu_bound, report_progress

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())  # GET /tasks/{id} and /tasks/{id}/events

PAGE = (Path(__file__).parent / "progress_page.html").read_text()


@cpu_bound
def resize_album(album_id: int, photos: int) -> int:
    for done in range(1, photos + 1):
        time.sleep(0.05)  # stands in for resizing one photo
        report_progress(done / photos, f"{done} of {photos} photos")
    return photos


@app.post("/albums/{album_id}/resize", status_code=202)
async def resize(album_id: int, tasks: OffloadTasks, photos: int = 20) -> dict[str, str]:
    handle = tasks.add_task(resize_album, album_id, photos)
    return {"task_id": handle.id, "page": f"/progress?task={handle.id}"}


@app.get("/progress", response_class=HTMLResponse)
async def progress_page() -> str:
    return PAGE  # a progress bar fed by the task's event stream
