"""The ready-made status router: `GET /tasks/{task_id}`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ._models import TaskState

if TYPE_CHECKING:
    from ._offload import Offload

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


def build_status_router(offload: Offload, *, prefix: str, tags: list[str]) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=list(tags))

    @router.get(
        "/{task_id}",
        response_model=TaskStatus,
        responses={404: {"model": TaskStatus, "description": "No task with this id is known"}},
        summary="Status of an offloaded task",
    )
    async def task_status(task_id: str) -> JSONResponse:
        info = await offload.status(task_id)
        status_code = 404 if info.state is TaskState.UNKNOWN else 200
        return JSONResponse(info.to_dict(), status_code=status_code)

    return router
