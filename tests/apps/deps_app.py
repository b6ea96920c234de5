"""A task with a `yield` dependency under a real uvicorn: its exit at shutdown."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from fastapi_offload import Offload, OffloadTasks

offload = Offload(shutdown_timeout=2)
app = FastAPI(lifespan=offload.lifespan)


def note(line: str) -> None:
    with open(os.environ["DEPS_LOG"], "a") as file:
        file.write(line + "\n")


async def get_connection() -> AsyncIterator[str]:
    note("open")
    try:
        yield "connection"
    except BaseException as exc:
        note(f"rollback {type(exc).__name__}")
        raise
    finally:
        note("close")


async def hold(seconds: float, conn: str = Depends(get_connection)) -> None:
    note(f"running with {conn}")
    await asyncio.sleep(seconds)


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/hold", status_code=202)
async def start(tasks: OffloadTasks, seconds: float) -> str:
    return tasks.add_task(hold, seconds).id
