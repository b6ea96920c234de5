"""The example app. Nothing here names a queue: the environment does.

    uvicorn examples.remote.app:app                        # local lanes
    OFFLOAD_BACKEND=celery uvicorn examples.remote.app:app # Celery (worker: celery_worker.py)
    OFFLOAD_BACKEND=rq uvicorn examples.remote.app:app     # RQ (worker: rq_worker.py)

Broker settings come from `OFFLOAD_REDIS_URL` and friends (see
`fastapi_offload.backends`); reports are written to `REPORTS_DIR`.
"""

from __future__ import annotations

import os
import tempfile

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks

from .jobs import announce, build_report

REPORTS_DIR = os.environ.get("REPORTS_DIR") or tempfile.gettempdir()

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())


@app.post("/reports/{report_id}", status_code=202)
async def create_report(report_id: int, tasks: OffloadTasks) -> dict[str, object]:
    """Accept the work and answer at once; the report is built in the background."""
    report = tasks.add_task(build_report, report_id, REPORTS_DIR)
    note = tasks.add_task(announce, report_id, REPORTS_DIR)
    return {"task_id": report.id, "announce_id": note.id, "pid": os.getpid()}


@app.get("/health")
async def health() -> dict[str, str]:
    backend = offload.backend
    return {"status": "ok", "backend": backend.name if backend else "local"}
