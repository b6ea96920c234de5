from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from fastapi_offload import Offload, OffloadTasks

REPORTS: list[str] = []  # stands in for your database
offload = Offload(thread_workers=4, shutdown_timeout=10)  # the runtime of `app` below
router = APIRouter()
# GET /tasks/{task_id}: answered by the runtime that serves the request, in both apps.
router.include_router(offload.status_router())


def build_report(name: str) -> None:  # a sync function: the thread lane
    REPORTS.append(name)


@router.post("/reports/{name}", status_code=202)
async def request_report(name: str, tasks: OffloadTasks) -> dict[str, str]:
    return {"task_id": tasks.add_task(build_report, name).id}


# Without a lifespan: a default runtime (OFFLOAD_* variables only) runs each request's
# tasks inside that request's ASGI call, after the response.
plain = FastAPI()
plain.include_router(router)


# With a lifespan: `offload`, with its options, runs the tasks detached from requests.
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # your start-up: runs before Offload starts
    async with offload.lifespan(app):  # pass `app`: requests find the runtime through it
        yield
    # your shutdown: runs after Offload has drained its tasks


app = FastAPI(lifespan=lifespan)
app.include_router(router)
