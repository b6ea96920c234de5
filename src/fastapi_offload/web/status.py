"""The ready-made status router: `GET /tasks/{task_id}`, its event stream, and an opt-in
`DELETE /tasks/{task_id}` that cancels; with `owner=`, each only for the task's owner."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, params
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from .._errors import StoreUnavailable
from .._models import TaskInfo, TaskState
from .._owner import owns
from ..core.runtime import Runtime
from . import sse
from .lookup import runtime_for

logger = logging.getLogger("fastapi_offload")

__all__ = ["TaskStatus", "build_status_router", "cancel_response"]

POLL = 0.25  # seconds between two looks at a streamed task's status
# An id from the URL is input: `Runtime.status` answers one longer than any id we make
# "unknown" (404, as for any other odd id) before any store is asked.
TaskId = Annotated[str, Path(description="The id `add_task` returned")]
END = "end"  # the id of a stream's last event: a reconnect that carries it gets a 204
# While the task store cannot be read, a stream says so (once) and keeps polling: an
# outage is not the end of the task, and the browser must keep following it.
STORE_UNAVAILABLE = "store_unavailable"


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
    result: Any = None
    progress: float | None = None
    progress_message: str | None = None
    due_at: float | None = None  # a delayed task's start time (`state: scheduled` until)


def build_status_router(
    runtime: Runtime,
    *,
    prefix: str,
    tags: list[str],
    cancel: bool,
    dependencies: Sequence[params.Depends],
    cancel_dependencies: Sequence[params.Depends] = (),
    owner: params.Depends | None = None,
    public: bool = False,
) -> APIRouter:
    """`Offload.status_router`'s routes; an open router that serves kept results or
    cancels logs a WARNING unless `public` says it is meant to be open."""
    open_to = []
    if not dependencies and owner is None:
        if runtime.config.keep_result:
            open_to.append("reads every kept result")
        if cancel and not cancel_dependencies:
            open_to.append("cancels any task")
    if open_to and not public:
        logger.warning(
            "status_router(prefix=%r): anyone who holds a task id %s. Protect it with "
            "owner=Depends(current_user_id) (each user sees only the tasks started with "
            "tasks.options(owner=...)) or dependencies=[Depends(require_user)], or pass "
            "public=True if that is meant",
            prefix,
            " and ".join(open_to),
        )
    router = APIRouter(prefix=prefix, tags=list(tags), dependencies=list(dependencies))
    unknown: dict[int | str, dict[str, Any]] = {
        404: {
            "model": TaskStatus,
            "description": "No task with this id is known"
            + (", or it is not the caller's" if owner is not None else ""),
        },
        503: {
            "description": "The task store cannot be read now (down, frozen, locked): "
            "retry after `Retry-After` seconds. Never a 404: the task may exist"
        },
    }
    # The caller's identity, resolved by FastAPI like any dependency of the route (its
    # own sub-dependencies, headers, cookies); without `owner=`, nobody is asked.
    caller_of: Any = owner if owner is not None else Depends(_anyone)

    async def lookup(found: Runtime, task_id: str, caller: Any) -> TaskInfo:
        info = await found.status(task_id)
        if owner is not None and not owns(info.owner, caller):
            # The same answer as an unknown id: another user's task is not confirmed to
            # exist, so ids cannot be probed.
            return TaskInfo(id=task_id, name="", state=TaskState.UNKNOWN)
        return info

    @router.get(
        "/{task_id}",
        response_model=TaskStatus,
        responses=unknown,
        summary="Status of an offloaded task",
    )
    async def task_status(
        task_id: TaskId, request: Request, caller: Any = caller_of
    ) -> JSONResponse:
        # An Offload that was never started (no lifespan): the app's default runtime.
        info = await lookup(runtime_for(request, runtime), task_id, caller)
        status_code = 404 if info.state is TaskState.UNKNOWN else 200
        return JSONResponse(info.to_dict(), status_code=status_code)

    @router.get(
        "/{task_id}/events",
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "`status` events (the task's status as JSON) on each "
                "change of state or progress, then an `end` event; while the task store "
                "cannot be read, a `store_unavailable` event and the stream goes on",
            },
            204: {"description": "The stream ended already (a reconnect after `end`)"},
            **unknown,
        },
        response_class=StreamingResponse,
        summary="Live status of an offloaded task (Server-Sent Events)",
    )
    async def task_events(task_id: TaskId, request: Request, caller: Any = caller_of) -> Response:
        if request.headers.get("last-event-id") == END:
            # Per the SSE standard, a 204 tells the browser's EventSource to stop
            # reconnecting: the task had ended when the last stream closed.
            return Response(status_code=204)
        found = runtime_for(request, runtime)
        try:
            info: TaskInfo | StoreUnavailable = await lookup(found, task_id, caller)
        except StoreUnavailable as exc:
            if owner is not None:
                raise  # whose task it is cannot be checked: never stream it unchecked
            # A 503 would make the browser's EventSource give up for good: stream
            # instead, saying the store is unavailable, until it answers again.
            info = exc
        if isinstance(info, TaskInfo) and info.state is TaskState.UNKNOWN:
            return JSONResponse(info.to_dict(), status_code=404)
        return sse.response(_events(found, task_id, info))

    if cancel:

        @router.delete(
            "/{task_id}",
            response_model=TaskStatus,
            status_code=202,
            dependencies=list(cancel_dependencies),
            responses={
                409: {"model": TaskStatus, "description": "The task has already ended"},
                **unknown,
            },
            summary="Cancel an offloaded task",
        )
        async def cancel_task(
            task_id: TaskId, request: Request, caller: Any = caller_of
        ) -> JSONResponse:
            found = runtime_for(request, runtime)
            if owner is not None:
                info = await lookup(found, task_id, caller)
                if info.state is TaskState.UNKNOWN:  # checked before anything is cancelled
                    return JSONResponse(info.to_dict(), status_code=404)
            return await cancel_response(found, task_id)

    return router


def _anyone() -> None:
    return None


async def cancel_response(runtime: Runtime, task_id: str) -> JSONResponse:
    """Cancel `task_id` and answer with its status: 202 (asked: a thread task or one in
    another process stops soon), 404 (unknown id) or 409 (it had ended); a durable
    store that cannot answer raises `StoreUnavailable` (a 503 with `Retry-After`)."""
    cancelled = await runtime.cancel(task_id)
    info = await runtime.status(task_id)
    if cancelled:
        status_code = 202
    else:
        status_code = 404 if info.state is TaskState.UNKNOWN else 409
    return JSONResponse(info.to_dict(), status_code=status_code)


def _events(
    runtime: Runtime, task_id: str, info: TaskInfo | StoreUnavailable
) -> AsyncIterator[str]:
    # Polled rather than pushed: the task may run in another worker process (a shared
    # store) or a remote backend, and a look-up of a local task is a dict read.
    shown: tuple[Any, ...] | None = None
    fetch = False  # the first look shows `info`, which the endpoint has just read

    async def look() -> tuple[str | None, str | None]:
        nonlocal info, shown, fetch
        if fetch:
            try:
                info = await runtime.status(task_id)
            except StoreUnavailable as exc:  # never an `end`: the task may be running still
                info = exc
        fetch = True
        if isinstance(info, StoreUnavailable):
            seen: tuple[Any, ...] = (STORE_UNAVAILABLE,)
        else:
            seen = (info.state, info.attempts, info.progress, info.progress_message)
        text = None
        if seen != shown:
            shown = seen
            if isinstance(info, StoreUnavailable):
                text = sse.event(STORE_UNAVAILABLE, sse.encode({"detail": str(info)}))
            else:
                text = sse.event("status", sse.encode(info.to_dict()))
        last = None
        if isinstance(info, TaskInfo) and (info.state.finished or info.state is TaskState.UNKNOWN):
            # Ended, or forgotten.
            last = sse.event(END, sse.encode({"state": info.state.value}), event_id=END)
        return text, last

    return sse.paced(look, poll=POLL, stream_max=sse.STREAM_MAX)
