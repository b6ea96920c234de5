from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks, cpu_bound

logger = logging.getLogger(__name__)
offload = Offload(loop_block_threshold=0.1)  # report steps that hold the loop > 100 ms


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # fastapi-offload's own lines show without this; your loggers need a config, and the
    # root logger's level is also the level of the records process workers carry back.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    async with offload.lifespan(app):
        yield


app = FastAPI(lifespan=lifespan)


@cpu_bound
def import_catalog(rows: int) -> int:
    logger.info("imported %d rows", rows)  # logged in a worker, handled in the app
    return rows


@app.post("/catalog/import", status_code=202)
async def start_import(rows: int, tasks: OffloadTasks) -> dict[str, str]:
    return {"task_id": tasks.add_task(import_catalog, rows).id}


@app.get("/stats")
async def stats() -> dict[str, Any]:
    return offload.stats().to_dict()
