"""A test app with a periodic task that appends `pid time` to the file named by
OFFLOAD_TEST_TICKS every OFFLOAD_TEST_EVERY seconds (default 1); its store comes from
OFFLOAD_STORE. For `--workers N`, several servers sharing a store, and the dashboard."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import FastAPI

from fastapi_offload import Offload

from .probes import probes

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(probes)
app.include_router(offload.status_router())
app.include_router(offload.dashboard_router(public=True))  # a test server on 127.0.0.1


@offload.every(seconds=float(os.environ.get("OFFLOAD_TEST_EVERY", "1")))
def append_tick() -> None:
    # One short write with O_APPEND: the lines of several processes never interleave.
    with open(os.environ["OFFLOAD_TEST_TICKS"], "a") as out:
        out.write(f"{os.getpid()} {time.time()}\n")


@app.get("/schedules")
async def schedules() -> list[dict[str, Any]]:
    return [info.to_dict() for info in await offload.schedules()]
