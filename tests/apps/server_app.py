"""The app the server tests run under a real uvicorn. Configured by OFFLOAD_* variables."""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import BackgroundTasks, FastAPI

from fastapi_offload import Offload, OffloadTasks

from . import jobs

# uvicorn configures only its own loggers; show the package's INFO lines too.
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.get("/sync")
def sync_endpoint() -> dict[str, bool]:
    # A sync endpoint runs in anyio's default thread pool, which BackgroundTasks shares.
    return {"ok": True}


@app.get("/stats")
async def stats() -> dict[str, Any]:
    return offload.stats().to_dict()


@app.post("/burn")
async def burn(
    tasks: OffloadTasks, seconds: float, lane: Literal["thread", "process"] = "process"
) -> dict[str, str]:
    return {"id": tasks.options(lane=lane).add_task(jobs.burn, seconds).id}


@app.post("/burn-background")
async def burn_background(background: BackgroundTasks, seconds: float) -> dict[str, bool]:
    background.add_task(jobs.burn, seconds)
    return {"ok": True}


@app.post("/nap")
async def nap(tasks: OffloadTasks, seconds: float, count: int = 1) -> list[str]:
    return [tasks.add_task(jobs.nap, seconds).id for _ in range(count)]


@app.post("/nap-background")
async def nap_background(background: BackgroundTasks, seconds: float, count: int = 1) -> int:
    for _ in range(count):
        background.add_task(jobs.nap, seconds)
    return count


@app.post("/nap-then-write")
async def nap_then_write(tasks: OffloadTasks, seconds: float, path: str) -> dict[str, str]:
    return {"id": tasks.add_task(jobs.sleep_then_write, seconds, path).id}


@app.post("/die")
async def die(tasks: OffloadTasks) -> dict[str, str]:
    return {"id": tasks.add_task(jobs.die).id}


@app.post("/hang")
async def hang(
    tasks: OffloadTasks, seconds: float, timeout: float, pid_file: str
) -> dict[str, str]:
    return {"id": tasks.options(timeout=timeout).add_task(jobs.hang, seconds, pid_file).id}


@app.post("/write")
async def write(tasks: OffloadTasks, path: str, text: str) -> dict[str, str]:
    return {"id": tasks.add_task(jobs.write_in_process, path, text, suffix="!").id}


@app.post("/block")
async def block(tasks: OffloadTasks, seconds: float) -> dict[str, str]:
    return {"id": tasks.add_task(jobs.block_loop, seconds).id}
