"""`Offload`: the application-level runtime that owns the lanes, the store and the task group."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, ClassVar, ParamSpec

import anyio
from anyio.abc import TaskGroup
from typing_extensions import Self

from ._config import OffloadConfig
from ._errors import ConfigError, NotOffloadable, OffloadClosed
from ._lanes import CpuAdvisor, Lane, LoopLane, ProcessLane, ThreadLane
from ._models import (
    NO_OPTIONS,
    CallOptions,
    OffloadStats,
    TaskCall,
    TaskHandle,
    TaskInfo,
    TaskState,
)
from ._monitor import LoopMonitor
from ._routing import IdSource, Profiles, build_record
from ._store import StatusStore, TaskRecord
from .backends.base import Backend

__all__ = ["Offload", "RuntimeOptions"]

_NOT_ASYNCIO = type("_NotAsyncio", (), {})()
_CANCEL_GRACE = 5.0  # seconds cancelled tasks get to finish at shutdown
_default_noted = False

logger = logging.getLogger("fastapi_offload")
P = ParamSpec("P")

# Where `Offload.lifespan` leaves the runtime for `OffloadTasks` to find.
STATE_KEY = "fastapi_offload"


class Offload:
    """The runtime behind `OffloadTasks`: lanes, limiters, status store and task group.

    Options are keyword arguments (see the configuration reference); each one not given
    is read from its `OFFLOAD_*` environment variable, then defaults. A bad value raises
    `ConfigError` naming the option. Start it with `FastAPI(lifespan=offload.lifespan)`
    or `async with offload:`.
    """

    # The runtime each running event loop uses when a request finds none on its app
    # (mounted sub-apps, lifespans composed by hand, or no lifespan at all). Weak keys:
    # a finished loop takes its entry with it, so nothing needs resetting between tests.
    _by_loop: ClassVar[weakref.WeakKeyDictionary[object, Offload]] = weakref.WeakKeyDictionary()

    def __init__(self, *, backend: Backend | str | None = None, **options: Any) -> None:
        if isinstance(backend, str):
            options["backend"] = backend
        self.config = OffloadConfig.resolve(options)
        self._backend: Backend | None = None
        if backend is not None and not isinstance(backend, str):
            if not isinstance(backend, Backend):
                raise ConfigError(
                    f"backend={backend!r} is not a Backend: pass 'local', 'celery', 'rq' or an "
                    "object with name, prepare, submit, status, start and stop"
                )
            self._backend = backend
        elif self.config.backend != "local":
            from .backends import load_backend

            self._backend = load_backend(self.config.backend)
        self.monitor = LoopMonitor(self.config.loop_block_threshold)
        self.advisor = CpuAdvisor()
        self.process_lane = ProcessLane(
            self.config.effective_process_workers,
            self.config.max_pending,
            self.config.process_priority,
        )
        self.lanes: dict[str, Lane] = {
            "loop": LoopLane(self.config.max_pending, self.monitor),
            "thread": ThreadLane(self.config.thread_workers, self.config.max_pending, self.advisor),
            "process": self.process_lane,
        }
        self.store = StatusStore(self.config.status_capacity)
        self._task_group: TaskGroup | None = None
        self._accepting = False
        self._active = 0
        self._idle: anyio.Event | None = None
        self._attached = False  # the default runtime: tasks run inside their request
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[asyncio.Task[None], TaskRecord] = {}
        self._loop_thread = 0
        self._profiles = Profiles()
        self._new_id = IdSource()

    def __repr__(self) -> str:
        backend = self._backend.name if self._backend else "local"
        return f"Offload(backend={backend!r}, running={self.running}, config={self.config!r})"

    @property
    def backend(self) -> Backend | None:
        """The remote backend, or `None` when every task runs locally."""
        return self._backend

    @property
    def running(self) -> bool:
        return self._accepting

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("this Offload is already running; start it once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            if self._backend is not None:
                await self._backend.start()
            if self.config.prestart_workers:
                await self.process_lane.prestart()
                task_group.start_soon(self.process_lane.keep_warm)
        except BaseException:
            self._task_group = None
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        self.monitor.start()
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: tasks go through the task group
            self._loop = None
        self._loop_thread = threading.get_ident()
        self._accepting = True
        try:
            Offload._by_loop.setdefault(asyncio.get_running_loop(), self)
        except RuntimeError:  # not asyncio (trio): requests find it through app.state
            pass
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group = self._task_group
        if task_group is None:
            return
        self._accepting = False
        try:
            # Shielded: when the host task itself is being cancelled (a default runtime at
            # loop shutdown), the drain must still get its chance.
            with anyio.CancelScope(shield=True):
                await self._drain()
                await self._cancel_tasks()
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            if self._backend is not None:
                with anyio.CancelScope(shield=True):
                    await self._backend.stop()
        finally:
            self._task_group = None
            self._idle = None  # bound to this event loop; a restart makes a new one
            self.monitor.stop()
            try:
                if Offload._by_loop.get(asyncio.get_running_loop()) is self:
                    del Offload._by_loop[asyncio.get_running_loop()]
            except RuntimeError:
                pass

    async def _drain(self) -> None:
        timeout = self.config.shutdown_timeout
        if self._active:
            logger.info("shutdown: waiting up to %s s for %d task(s)", timeout, self._active)
        with anyio.move_on_after(timeout):
            await self.join()
        for record in self.store.active():
            logger.warning(
                "shutdown: abandoning task %s (id %s, %s, %s) after waiting %s s "
                "(shutdown_timeout); raise OFFLOAD_SHUTDOWN_TIMEOUT to wait longer",
                record.name,
                record.id,
                record.lane,
                record.state.value,
                timeout,
            )

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Run the runtime for the app's lifetime: `FastAPI(lifespan=offload.lifespan)`.

        To keep a lifespan of your own, enter this one inside it:
        `async with offload.lifespan(app): yield`. On shutdown it stops accepting tasks,
        waits up to `shutdown_timeout` for the running ones, then cancels and logs the rest.
        """
        async with self:
            state = getattr(app, "state", None)
            if state is not None:
                setattr(state, STATE_KEY, self)
            yield

    @classmethod
    def for_current_loop(cls) -> Offload:
        """The runtime of this event loop: one started by a lifespan, else a default one.

        The default runtime (configured from `OFFLOAD_*`) has no owner that outlives a
        request, so it runs each request's tasks inside that request's ASGI call, after
        the response, concurrently on its lanes: where `BackgroundTasks` ran them. That
        keeps what servers and test clients expect of it (uvicorn waits for them on
        shutdown; `TestClient` returns once they are done). With
        `FastAPI(lifespan=offload.lifespan)` tasks are detached from the request.
        """
        global _default_noted
        try:
            loop: object = asyncio.get_running_loop()
        except RuntimeError:  # trio: one default runtime per thread is enough
            loop = _NOT_ASYNCIO
        found = cls._by_loop.get(loop)
        if found is None:
            found = cls()
            found._attached = True
            found._accepting = True
            cls._by_loop[loop] = found
            if not _default_noted:
                _default_noted = True
                logger.info(
                    "no Offload lifespan found: using a default runtime that runs each "
                    "request's tasks after its response, inside the request. Add "
                    "FastAPI(lifespan=offload.lifespan) to detach them and configure it."
                )
        return found

    async def _run_attached(self, records: list[TaskRecord]) -> None:
        """Run a request's tasks concurrently and wait for them (the default runtime)."""
        async with anyio.create_task_group() as task_group:
            for record in records:
                task_group.start_soon(self._run, record, name=f"offload:{record.name}")

    # -- submission (called by OffloadTasks) ---------------------------------------

    def _prepare(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions = NO_OPTIONS,
    ) -> TaskRecord:
        """Validate, route and admit one call; raise inside the request if it cannot run."""
        if not self._accepting:
            raise OffloadClosed(
                "the Offload runtime is not running (not started yet, or shutting down); "
                "start it with FastAPI(lifespan=offload.lifespan) or `async with offload:`"
            )
        record = build_record(
            func,
            args,
            kwargs,
            options,
            self.config,
            remote=self._backend is not None,
            cpu_bound=self.advisor.flagged,
            profiles=self._profiles,
            new_id=self._new_id,
        )
        if record.lane == "remote":
            self._prepare_remote(record)
        # A sync endpoint calls add_task from a worker thread: admission and the
        # counters are shared with the loop thread.
        with self._lock:
            if record.lane in self.lanes:
                self.lanes[record.lane].admit(record.name)
            self.store.add(record)
            self._active += 1
        return record

    def _prepare_remote(self, record: TaskRecord) -> None:
        if self._backend is None:
            raise ConfigError(
                f"{record.name} was routed to lane 'remote' but no backend is configured: "
                "set OFFLOAD_BACKEND=celery|rq or Offload(backend=...)"
            )
        if not inspect.isfunction(record.func):
            # Only a name and JSON arguments reach the worker: whatever a partial, a bound
            # method or a callable object carries would be silently lost.
            raise NotOffloadable(
                f"cannot send {record.name} to the {self._backend.name} backend: it is a "
                f"{type(record.func).__name__}, not a module-level function, and a worker "
                "receives only a registered function's name and its arguments. Pass a "
                "plain function and put what it needs in its arguments."
            )
        self._backend.prepare(self._task_call(record))
        record.lane = self._backend.name

    def _task_call(self, record: TaskRecord) -> TaskCall:
        return TaskCall(
            id=record.id,
            name=record.name,
            args=record.args,
            kwargs=record.kwargs,
            timeout=record.timeout,
            retries=record.retries,
            retry_delay=record.retry_delay,
        )

    def _is_remote(self, record: TaskRecord) -> bool:
        return record.lane not in self.lanes

    async def _submit_remote(self, record: TaskRecord) -> None:
        """Hand a prepared remote call to the backend; raises `BackendUnavailable`."""
        assert self._backend is not None
        try:
            await self._backend.submit(self._task_call(record))
        except BaseException:
            self._discard(record)
            raise
        # From here the backend owns the task: keep only its id for status look-ups.
        self.store.finish(record)
        self._settle()

    def _dispatch(self, record: TaskRecord) -> None:
        """Start a prepared local call in the runtime's task group."""
        if self._task_group is None:
            if self._attached:
                self._discard(record)
                raise OffloadClosed(
                    "the default runtime runs tasks only inside requests (through "
                    "OffloadTasks); to submit from elsewhere, start an Offload with "
                    "FastAPI(lifespan=offload.lifespan) or `async with offload:`"
                )
            self._discard(record)
            raise OffloadClosed(f"the Offload runtime stopped before {record.name} could start")
        name = f"offload:{record.name}"
        if self._loop is None:
            self._task_group.start_soon(self._run, record, name=name)
            return
        if threading.get_ident() != self._loop_thread:
            # A sync dependency's teardown adds tasks from a worker thread.
            self._loop.call_soon_threadsafe(self._start_task, record, name)
            return
        self._start_task(record, name)

    def _start_task(self, record: TaskRecord, name: str) -> None:
        # On asyncio a plain task costs ~2 us where TaskGroup.start_soon costs ~10 us, on
        # every task; anyio's primitives work the same inside it. Tracked here so that
        # shutdown can cancel and await what the drain left.
        assert self._loop is not None
        task = self._loop.create_task(self._run(record), name=name)
        self._tasks[task] = record
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        record = self._tasks.pop(task)
        if self.store.is_active(record.id):
            # Cancelled before its first step: _run never ran, so settle it here.
            lane = self.lanes[record.lane]
            if record.attempts == 0:
                lane.withdraw()
            record.state = TaskState.CANCELLED
            record.error = "cancelled (shutdown)"
            lane.cancelled += 1
            self.store.finish(record)
            self._settle()
        elif not task.cancelled() and task.exception() is not None:
            # _run handles every failure of the task itself; this is a bug of ours.
            logger.error("internal error in %s", task.get_name(), exc_info=task.exception())

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # Bounded: a task that catches the cancellation and keeps awaiting must not hold
        # the server's shutdown.
        with anyio.move_on_after(_CANCEL_GRACE):
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.done():
                logger.warning(
                    "shutdown: %s ignored its cancellation for %s s; leaving it",
                    task.get_name(),
                    _CANCEL_GRACE,
                )

    def _discard(self, record: TaskRecord) -> None:
        """Forget a prepared call that will not run (its request failed)."""
        if record.state is not TaskState.PENDING or not self.store.is_active(record.id):
            return
        if not self._is_remote(record):
            self.lanes[record.lane].withdraw()
        self.store.forget(record)
        self._settle()

    async def submit(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Offload a call outside a request (a script, a websocket, a startup job).

        It starts at once; raises what `add_task` raises, and `BackendUnavailable`.
        """
        return await self._submit(func, args, kwargs, NO_OPTIONS)

    def options(
        self,
        *,
        lane: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        retry_delay: float | None = None,
    ) -> RuntimeOptions:
        """Per-call settings for `submit`: `await offload.options(timeout=5).submit(f, x)`."""
        return RuntimeOptions(self, CallOptions(lane, timeout, retries, retry_delay))

    async def _submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
    ) -> TaskHandle:
        record = self._prepare(func, args, kwargs, options)
        if self._is_remote(record):
            await self._submit_remote(record)
        else:
            self._dispatch(record)
        return TaskHandle(record.id, record.name, record.lane)

    # -- running -------------------------------------------------------------------

    async def _run(self, record: TaskRecord) -> None:
        lane = self.lanes[record.lane]
        try:
            await lane.run(record)
        except anyio.get_cancelled_exc_class():
            if record.attempts == 0:
                lane.withdraw()
            record.state = TaskState.CANCELLED
            record.error = "cancelled (shutdown)"
            lane.cancelled += 1
            if self._attached:
                # Inside a request, the server cancelled it (past its graceful timeout);
                # a lifespan runtime logged it already while draining.
                logger.warning(
                    "task %s (id %s, %s lane) was cancelled by the server",
                    record.name,
                    record.id,
                    record.lane,
                )
            raise
        finally:
            record.finished_at = time.time()
            self.store.finish(record)
            self._settle()

    def _settle(self) -> None:
        with self._lock:
            self._active -= 1
        if self._active == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    # -- queries -------------------------------------------------------------------

    async def join(self) -> None:
        """Wait until no local task is pending or running (for tests and scripts)."""
        while self._active:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    async def status(self, task_id: str) -> TaskInfo:
        """The task's `TaskInfo`; state `unknown` for an id this runtime never saw.

        Remote tasks are looked up in the backend (off the event loop).
        """
        info = self.store.get(task_id)
        local = info is not None and info.lane in self.lanes
        if self._backend is not None and not local:
            remote = await self._backend.status(task_id)
            if remote is not None:
                # Queues keep fewer timestamps (Celery has no start time): fill the gaps.
                if info is not None:
                    remote = dataclasses.replace(
                        remote,
                        name=remote.name or info.name,
                        created_at=remote.created_at or info.created_at,
                    )
                return remote
        if info is not None:
            return info
        return TaskInfo(id=task_id, name="", state=TaskState.UNKNOWN)

    def stats(self) -> OffloadStats:
        """Counters per lane, loop-block reports, process-worker crashes and CPU time."""
        return OffloadStats(
            lanes={name: lane.stats() for name, lane in self.lanes.items()},
            loop_blocks=self.monitor.blocks,
            longest_loop_block=self.monitor.longest,
            process_crashes=self.process_lane.crashed,
            process_cpu_seconds=self.process_lane.cpu_seconds,
            cpu_bound_callables=tuple(sorted(self.advisor.flagged)),
            statuses_kept=len(self.store),
        )

    def status_router(self, *, prefix: str = "/tasks", tags: list[str] | None = None) -> Any:
        """An `APIRouter` with `GET {prefix}/{task_id}`: the task's status as JSON.

        Mount it with `app.include_router(offload.status_router())`. An unknown id gets
        a 404 whose body still has `state: "unknown"`.
        """
        from ._router import build_status_router

        return build_status_router(self, prefix=prefix, tags=tags or ["tasks"])


class RuntimeOptions:
    """`offload.options(...)`: submit calls with per-call lane, timeout and retries."""

    def __init__(self, offload: Offload, options: CallOptions) -> None:
        self._offload = offload
        self._options = options

    async def submit(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Like `Offload.submit`, with these settings."""
        return await self._offload._submit(func, args, kwargs, self._options)
