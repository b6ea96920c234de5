"""The ready-made status router: `GET /tasks/{task_id}`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ._lookup import runtime_for
from ._models import TaskState
from ._runtime import Runtime

__all__ = ["TaskStatus", "build_status_router"]


class TaskStatus(BaseModel):
    """A task's status as the router returns it."""

    id: str
    name: str
    state: TaskState
    lane: str
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    error: str | None = None


def build_status_router(runtime: Runtime, *, prefix: str, tags: list[str]) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=list(tags))

    @router.get(
        "/{task_id}",
        response_model=TaskStatus,
        responses={404: {"model": TaskStatus, "description": "No task with this id is known"}},
        summary="Status of an offloaded task",
    )
    async def task_status(task_id: str, request: Request) -> JSONResponse:
        # An Offload that was never started (no lifespan): the app's default runtime.
        info = await runtime_for(request, runtime).status(task_id)
        status_code = 404 if info.state is TaskState.UNKNOWN else 200
        return JSONResponse(info.to_dict(), status_code=status_code)

    return router
