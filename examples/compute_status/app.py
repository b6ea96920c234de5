"""Start a CPU-heavy computation, answer 202 at once, let the client poll.

    uvicorn examples.compute_status.app:app

then, in another shell, `python -m examples.compute_status.client 300000`.
Results are written to `$RESULTS_DIR` (default: a directory in the system's temp dir).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, HTTPException, Query

from fastapi_offload import Offload, OffloadTasks

from .jobs import count_primes

RESULTS_DIR = Path(os.environ.get("RESULTS_DIR") or Path(tempfile.gettempdir()) / "primes")

offload = Offload(prestart_workers=True)  # the first request does not wait for a worker
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())  # GET /tasks/{task_id}


def result_path(below: int) -> Path:
    return RESULTS_DIR / f"primes-below-{below}.json"


@app.post("/primes", status_code=202)
async def start_count(
    below: Annotated[int, Query(gt=2, le=50_000_000)], tasks: OffloadTasks
) -> dict[str, str]:
    await anyio.Path(RESULTS_DIR).mkdir(parents=True, exist_ok=True)
    handle = tasks.add_task(count_primes, below, str(result_path(below)))
    return {
        "task_id": handle.id,
        "status_url": f"/tasks/{handle.id}",
        "result_url": f"/primes/{below}",
    }


@app.get("/primes/{below}")
async def get_count(below: int) -> dict[str, Any]:
    path = anyio.Path(result_path(below))
    if not await path.exists():
        raise HTTPException(404, f"primes below {below} have not been counted yet")
    result: dict[str, Any] = json.loads(await path.read_text())
    return result


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
