"""The example's task functions.

They know nothing about where they run: the web process (local lanes), a Celery
worker or an RQ worker. The worker modules next to this one register this module,
so every decorated function here is a task the workers agree to run.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import anyio

from fastapi_offload import cpu_bound, task


@cpu_bound(retries=2, retry_delay=1)
def build_report(report_id: int, out_dir: str) -> str:
    """Crunch numbers (pure-Python CPU work) and write `report-<id>.json` into `out_dir`.

    Takes plain JSON arguments (an id and a path, not objects), so the call can travel
    to any worker. Returns the path it wrote.
    """
    started = time.perf_counter()
    total = sum(i * i for i in range(200_000 + report_id))
    path = Path(out_dir) / f"report-{report_id}.json"
    body = {
        "report_id": report_id,
        "total": total,
        "pid": os.getpid(),
        "seconds": round(time.perf_counter() - started, 4),
    }
    path.write_text(json.dumps(body))
    return str(path)


@task
async def announce(report_id: int, out_dir: str) -> None:
    """An `async def` task: a remote worker runs it with `asyncio.run`."""
    await asyncio.sleep(0.01)
    await (anyio.Path(out_dir) / f"announce-{report_id}.txt").write_text(f"{os.getpid()}\n")
