"""Before: a CPU-heavy media job in FastAPI's `BackgroundTasks`.

    uvicorn examples.media_fix.before:app

`make_thumbnail` is a `def` function, so `BackgroundTasks` runs it in anyio's default
thread pool, after the response. It computes in pure Python and holds the GIL, so the
event loop waits for the GIL on every step of every other request: `/health` slows
down while thumbnails are made.
"""

from __future__ import annotations

from fastapi import BackgroundTasks, FastAPI

from .jobs import make_thumbnail

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/images/{image_id}/thumbnail", status_code=202)
async def create_thumbnail(image_id: int, tasks: BackgroundTasks) -> dict[str, int]:
    tasks.add_task(make_thumbnail, image_id, size=128)
    return {"image_id": image_id}
