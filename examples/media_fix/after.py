"""After: the same app with one word changed, `BackgroundTasks` -> `OffloadTasks`.

    uvicorn examples.media_fix.after:app

`make_thumbnail` is declared `@cpu_bound` where it is defined, so `OffloadTasks` runs
it in a worker process: the API process keeps its GIL and `/health` answers at once.
"""

from __future__ import annotations

from fastapi import FastAPI

from fastapi_offload import OffloadTasks

from .jobs import make_thumbnail

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/images/{image_id}/thumbnail", status_code=202)
async def create_thumbnail(image_id: int, tasks: OffloadTasks) -> dict[str, int]:
    tasks.add_task(make_thumbnail, image_id, size=128)
    return {"image_id": image_id}
