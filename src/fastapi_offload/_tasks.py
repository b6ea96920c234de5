"""`OffloadTasks`: the request-scoped collector an endpoint receives instead of BackgroundTasks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Annotated, Any, ParamSpec

from fastapi import Depends
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect

from ._models import NO_OPTIONS, CallOptions, TaskHandle
from ._offload import STATE_KEY, Offload
from ._store import TaskRecord

__all__ = ["OffloadTasks", "TaskCollector", "TaskOptions"]

P = ParamSpec("P")
logger = logging.getLogger("fastapi_offload")


class TaskCollector:
    """Collects a request's tasks; they start once the response has been sent.

    Every call is validated, routed and admitted in `add_task`, inside the request,
    so a call that cannot run fails there (and a full lane answers 503) instead of
    being lost later. Tasks for a remote backend are submitted before the response is
    sent; local tasks start after it, whatever `Response` the endpoint returned.
    """

    def __init__(self, runtime: Offload) -> None:
        self._runtime = runtime
        self._records: list[TaskRecord] = []
        self._immediate = False

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Offload `func(*args, **kwargs)`; same signature as `BackgroundTasks.add_task`.

        Raises `NotOffloadable` if the call cannot travel to its lane, `QueueFull` if
        the lane is full (a 503), `OffloadClosed` during shutdown.
        """
        return self._add(func, args, kwargs, NO_OPTIONS)

    def options(
        self,
        *,
        lane: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        retry_delay: float | None = None,
    ) -> TaskOptions:
        """Per-call settings, kept apart from the task's own keyword arguments:
        `tasks.options(lane="process", timeout=30).add_task(func, ...)`."""
        return TaskOptions(self, CallOptions(lane, timeout, retries, retry_delay))

    def _add(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
    ) -> TaskHandle:
        record = self._runtime._prepare(func, args, kwargs, options)
        if self._immediate and not self._runtime._is_remote(record):
            # A websocket has no response to wait for, and after the response a task
            # has nothing left to wait for: start it now.
            self._runtime._dispatch(record)
        else:
            self._records.append(record)
        return TaskHandle(record.id, record.name, record.lane)

    async def _submit_remote(self) -> None:
        runtime = self._runtime
        for record in [r for r in self._records if runtime._is_remote(r)]:
            self._records.remove(record)
            await runtime._submit_remote(record)

    async def _before_response(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # Pushed onto FastAPI's function-scoped exit stack, which closes after the
        # endpoint returned and before the response is sent: a remote task is in the
        # broker before the client hears "accepted", and a broker error becomes a 503.
        if _failed(exc_type):
            self._discard()  # the endpoint failed: like BackgroundTasks, nothing runs
        else:
            await self._submit_remote()
        return False

    def _discard(self) -> None:
        for record in self._records:
            self._runtime._discard(record)
        self._records.clear()

    async def _after_response(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # The response has gone: nothing raised here can reach the client any more, so
        # this hook never raises; whatever it cannot start is discarded and logged.
        if _failed(exc_type):
            self._discard()  # the endpoint or the response failed: nothing runs
            return False
        runtime, records = self._runtime, self._records
        self._records = []
        self._immediate = True
        local = [r for r in records if not runtime._is_remote(r)]
        late_remote = [r for r in records if runtime._is_remote(r)]
        try:
            if not runtime._attached:
                while local:
                    runtime._dispatch(local.pop(0))
            # Only when the early hook was unavailable, or a task was added after it.
            while late_remote:
                await runtime._submit_remote(late_remote.pop(0))
            if runtime._attached:
                await runtime._run_attached(local)
                local = []
        except Exception as error:
            logger.error(
                "could not start %d task(s) after the response was sent: %r",
                len(local) + len(late_remote) + 1,
                error,
            )
        finally:
            for record in local + late_remote:
                runtime._discard(record)
        return False


def _failed(exc_type: type[BaseException] | None) -> bool:
    # A websocket handler ends when its client disconnects: a normal end, not a failure.
    return exc_type is not None and not issubclass(exc_type, WebSocketDisconnect)


class TaskOptions:
    """`tasks.options(...)`: add tasks with per-call lane, timeout and retries."""

    def __init__(self, collector: TaskCollector, options: CallOptions) -> None:
        self._collector = collector
        self._options = options

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Like `OffloadTasks.add_task`, with this builder's settings."""
        return self._collector._add(func, args, kwargs, self._options)


def runtime_for(conn: HTTPConnection) -> Offload:
    """The `Offload` serving this request: the app's (set by its lifespan), else the loop's."""
    found = getattr(conn.app.state, STATE_KEY, None) if "app" in conn.scope else None
    if isinstance(found, Offload) and found.running:
        return found
    return Offload.for_current_loop()


async def _provide(conn: HTTPConnection) -> TaskCollector:
    runtime = runtime_for(conn)
    collector = TaskCollector(runtime)
    # Remote tasks of a websocket are still submitted when its handler returns.
    collector._immediate = conn.scope["type"] == "websocket" and not runtime._attached
    # FastAPI (>= 0.121) runs every request inside two exit stacks: the function stack
    # closes after the endpoint returned and before the response is sent, the request
    # stack after the response. Registering on them directly, rather than being a
    # `yield` dependency, costs less on every request and, unlike
    # `Depends(scope="function")`, lets a user's own `yield` dependency take OffloadTasks
    # wherever it took BackgroundTasks. tests/test_tasks.py pins this behaviour.
    function_stack = conn.scope.get("fastapi_function_astack")
    request_stack = conn.scope.get("fastapi_inner_astack")
    if not isinstance(request_stack, AsyncExitStack):
        raise RuntimeError(
            "OffloadTasks needs FastAPI 0.121 or later (its request exit stacks are "
            "missing); upgrade FastAPI"
        )
    request_stack.push_async_exit(collector._after_response)
    # Only remote tasks need the pre-response hook, and only a backend makes them.
    if runtime.backend is not None and isinstance(function_stack, AsyncExitStack):
        function_stack.push_async_exit(collector._before_response)
    return collector


OffloadTasks = Annotated[TaskCollector, Depends(_provide)]
"""Annotate an endpoint parameter with `OffloadTasks` where you had `BackgroundTasks`."""
