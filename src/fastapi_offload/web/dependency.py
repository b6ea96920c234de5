"""`OffloadTasks`: the request-scoped collector an endpoint receives instead of BackgroundTasks."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from types import CoroutineType, TracebackType
from typing import Annotated, Any, Literal, ParamSpec

from fastapi import BackgroundTasks, Depends
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect
from typing_extensions import Unpack

from .._models import TaskHandle
from .._record import TaskRecord
from .._settings import NO_SETTINGS, CallOptions, TaskSettings
from .._task_deps import refuse_request_objects
from ..core.callables import refuse_coroutine
from ..core.runtime import Runtime
from .lookup import runtime_for

__all__ = ["OffloadTasks", "TaskCollector", "TasksWithOptions"]

P = ParamSpec("P")


class TaskCollector:
    """Collects a request's tasks; they start once the response has been sent.

    Every call is validated, routed and admitted in `add_task`, inside the request,
    so a call that cannot run fails there (and a full lane answers 503) instead of
    being lost later. Tasks for a remote backend are sent before the response;
    local tasks start after it, whatever `Response` the endpoint returned. Once the
    endpoint has returned, its tasks are accepted: they run even if something fails
    after that (a `yield` dependency's teardown, the client going away).
    """

    __slots__ = ("_immediate", "_records", "_returned", "_route", "_runtime", "_started")

    def __init__(self, runtime: Runtime, *, immediate: bool = False, route: Any = None) -> None:
        self._runtime = runtime
        self._route = route  # the endpoint's route: what its `yield` dependencies made
        self._records: list[TaskRecord] = []  # admitted, not started yet
        self._started: list[TaskRecord] = []  # started, for a request that waits for them
        # A websocket has no response to wait for: its tasks start when added.
        self._immediate = immediate
        self._returned = False  # the endpoint returned (and its remote tasks were sent)

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Offload `func(*args, **kwargs)`; same signature as `BackgroundTasks.add_task`.

        Raises `NotOffloadable` if the call cannot travel to its lane, `QueueFull` if
        the lane is full (a 503), `OffloadClosed` during shutdown.
        """
        return self._add(func, args, kwargs, NO_SETTINGS)

    def options(self, **options: Unpack[CallOptions]) -> TasksWithOptions:
        """Per-call settings, kept apart from the task's own keyword arguments:
        `tasks.options(lane="process", timeout=30).add_task(func, ...)`.

        `after=handle` (or a list of handles): the task starts once those tasks
        succeeded, and ends `cancelled`, naming the one, if any of them did not.

        `owner` records who started the task (a user id, 200 characters at most), for
        `offload.status_router(owner=Depends(current_user_id))`, which then serves the
        task to that user only.

        `delay=30` (seconds) or `at=<aware datetime>`: the task is `scheduled` (its
        status has `due_at`) until then, holding no lane slot and not counted against
        `max_pending`; then it runs as any task. It needs the Offload lifespan; with a
        durable store it survives restarts (its function must then be declared with
        `@task`, `cpu_bound` or `io_bound`), with the memory store it is cancelled at
        shutdown.

        `key="order-42"` (an idempotency key): while a task with that key is pending,
        scheduled or running, or ended less than `key_ttl` ago, `add_task` returns that
        task's handle with `existing=True` and starts nothing; otherwise the new task
        takes the key. Atomic across every process sharing a durable store. A key held by
        a task of another function raises `KeyConflict`.

        Raises `ConfigError` for a bad value, naming the setting; `StoreUnavailable` (a
        503) when a key cannot be checked within `store_timeout`.
        """
        return TasksWithOptions(self, TaskSettings.of_call("tasks.options", options))

    def _add(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskSettings,
    ) -> TaskHandle:
        if isinstance(func, CoroutineType):  # `add_task(job())`: a call, not a callable
            refuse_coroutine(func, "add_task")
        if (args or kwargs) and self._route is not None and not self._runtime.request_waits:
            refuse_request_objects(
                self._route, getattr(func, "__qualname__", "the task"), args, kwargs
            )
        record = self._runtime.admit(func, args, kwargs, options)
        if isinstance(record, TaskHandle):
            return record  # `options(key=...)`: the task holding the key; nothing started
        if self._immediate:
            self._runtime.start(record)
            if self._runtime.request_waits:
                self._started.append(record)
        else:
            self._records.append(record)
        return TaskHandle(record.id, record.name, record.lane)

    # The two exit-stack hooks are this object's `__exit__` and `__aexit__`: an exit
    # stack takes an object with them as it is, where a bound method costs it a caught
    # AttributeError on every request (~1 us for the two).

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        # On FastAPI's function-scoped exit stack, which closes after the endpoint
        # returned and before the response is sent.
        self._returned = _ended_normally(exc_type)
        if not self._returned:  # before the error response: a retry finds its keys free
            self._runtime.abort(self._records)
            self._records = []
        return False

    async def _commit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # The same hook when tasks must be committed before the client hears
        # "accepted": written to a durable store, remote ones in the broker. A store
        # or broker error becomes a 503.
        if not _ended_normally(exc_type):
            await self._runtime.abort_before_response(self._records)
            self._records = []
            return False
        runtime, records = self._runtime, self._records
        self._records = [r for r in records if runtime.is_local(r)]
        await runtime.commit(records)
        self._returned = True
        return False

    async def _in_response(self) -> None:
        # A request that waits for its tasks (the default runtime, or `wait_for_tasks`):
        # a task of the request's own BackgroundTasks, so the
        # request's tasks run where BackgroundTasks ran them, after the body was sent and
        # before its `yield` dependencies exit (FastAPI closes those after the response),
        # whatever the order of the endpoint's parameters. A response that carries a
        # background of its own never runs this: `_after_response` starts them then.
        if self._returned:
            await self._start_and_wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        # On the request-scoped exit stack: the response has gone. This hook never
        # raises (nothing can reach the client any more); a task that cannot start
        # is failed and logged by the runtime.
        self._immediate = True  # a task added from now on starts at once
        if not self._returned:
            self._runtime.abort(self._records)  # the endpoint failed: like BackgroundTasks
            self._records = []
        await self._start_and_wait()
        return False

    async def _start_and_wait(self) -> None:
        runtime, records = self._runtime, self._records
        self._records = []
        for record in records:
            runtime.start(record)
        if runtime.request_waits:
            self._started += records
        if self._started:
            # The default runtime: the request's ASGI call waits for its tasks, where
            # BackgroundTasks ran them (servers and test clients wait for that).
            started, self._started = self._started, []
            await runtime.wait(started)


def _ended_normally(exc_type: type[BaseException] | None) -> bool:
    # A websocket handler ends when its client disconnects: a normal end, not a failure.
    return exc_type is None or issubclass(exc_type, WebSocketDisconnect)


class TasksWithOptions:
    """`tasks.options(...)`: add tasks with per-call lane, timeout and retries."""

    __slots__ = ("_collector", "_options")

    def __init__(self, collector: TaskCollector, options: TaskSettings) -> None:
        self._collector = collector
        self._options = options

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Like `OffloadTasks.add_task`, with this builder's settings."""
        return self._collector._add(func, args, kwargs, self._options)


async def _provide(conn: HTTPConnection, background: BackgroundTasks) -> TaskCollector:
    runtime = runtime_for(conn)
    collector = TaskCollector(
        runtime, immediate=conn.scope["type"] == "websocket", route=conn.scope.get("route")
    )
    if runtime.request_waits and not collector._immediate:
        background.add_task(collector._in_response)
    # FastAPI (>= 0.121) runs every request inside two exit stacks: the function stack
    # closes after the endpoint returned and before the response is sent, the request
    # stack after the response. Registering on them directly, rather than being a
    # `yield` dependency, costs less on every request and, unlike
    # `Depends(scope="function")`, lets a user's own `yield` dependency take OffloadTasks
    # wherever it took BackgroundTasks. tests/test_offload.py pins this behaviour.
    # Not public API: tests/contracts/test_fastapi.py checks it on each FastAPI.
    request_stack = conn.scope.get("fastapi_inner_astack")
    if not isinstance(request_stack, AsyncExitStack):
        from fastapi import __version__

        raise RuntimeError(
            "OffloadTasks needs FastAPI's request exit stacks (scope['fastapi_inner_astack'], "
            f"FastAPI 0.121 or later) and FastAPI {__version__} has none: upgrade an older "
            "FastAPI; a newer one may have changed them (see the verified versions in "
            "fastapi-offload's docs, Getting started > Install)"
        )
    # (Not a context manager, having no `__enter__`: hence the ignores, free at run time.)
    request_stack.push_async_exit(collector)  # type: ignore[type-var]  # `__aexit__`, after the response
    function_stack = conn.scope.get("fastapi_function_astack")
    if not isinstance(function_stack, AsyncExitStack):
        collector._returned = True  # no earlier hook: the request stack's is the only one
    elif runtime.commits:
        function_stack.push_async_exit(collector._commit)
    else:
        function_stack.push(collector)  # type: ignore[type-var]  # `__exit__`: sync, no await
    return collector


OffloadTasks = Annotated[TaskCollector, Depends(_provide)]
"""Annotate an endpoint parameter with `OffloadTasks` where you had `BackgroundTasks`."""
