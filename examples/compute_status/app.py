"""Start a CPU-heavy computation, answer 202 at once, follow it from a page or a client.

    uvicorn examples.compute_status.app:app

then open http://127.0.0.1:8000/ for a progress bar, or, in another shell, run
`python -m examples.compute_status.client 1000000`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse

from fastapi_offload import Offload, OffloadTasks

from .jobs import count_primes

offload = Offload(prestart_workers=True)  # the first request does not wait for a worker
app = FastAPI(lifespan=offload.lifespan)
# GET /tasks/{id} (status, progress, result), GET /tasks/{id}/events (the same, live) and
# DELETE /tasks/{id}. Here anyone may cancel any count (public=True says so, and silences
# the warning); a real app passes `owner=Depends(current_user_id)`, so that only the user
# who started a count reads or cancels it.
app.include_router(offload.status_router(cancel=True, public=True))

# Read once at import: the page is static, its script asks the routes above for the rest.
PAGE = (Path(__file__).parent / "page.html").read_text()


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE


@app.post("/primes", status_code=202)
async def start_count(
    below: Annotated[int, Query(gt=2, le=50_000_000)], tasks: OffloadTasks
) -> dict[str, str]:
    handle = tasks.add_task(count_primes, below)
    return {
        "task_id": handle.id,
        "status_url": f"/tasks/{handle.id}",
        "events_url": f"/tasks/{handle.id}/events",
    }


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
