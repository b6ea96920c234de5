"""`Offload`: the application-level runtime, a facade over `core.runtime.Runtime`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar

from typing_extensions import Self, Unpack

from ._config import OffloadConfig
from ._errors import OffloadClosed
from ._models import OffloadStats, ScheduleInfo, TaskHandle, TaskInfo
from ._names import checked_options
from ._offload_routers import OffloadRouters
from ._public import public
from ._settings import NO_SETTINGS, CallOptions, LaneName, TaskOptions, TaskSettings
from .backends.base import Backend
from .core.callables import refuse_coroutine
from .core.lifecycle import Lifecycle, build_backend, build_store
from .core.periodic import schedules
from .core.runtime import Runtime
from .core.timetable import Cron, Every
from .web.lookup import RUNTIME_KEY, STATE_KEY

__all__ = ["Offload", "RuntimeOptions"]

P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., Any])
# `backend` is an option too, but also takes a `Backend` instance: passed on apart.
_OPTION_NAMES = frozenset(f for f in OffloadConfig.__dataclass_fields__ if f != "backend")


@public
class Offload(OffloadRouters):
    """The runtime behind `OffloadTasks`: lanes, limiters, status store and runner.

    Every option left at `None` is read from its `OFFLOAD_*` environment variable,
    then takes its default (see the configuration reference). A bad value raises
    `ConfigError` naming the option; so does an unknown keyword, naming the closest
    option. Start it with `FastAPI(lifespan=offload.lifespan)` or `async with offload:`.
    """

    @checked_options
    def __init__(
        self,
        *,
        backend: Backend | str | None = None,
        thread_workers: int | None = None,
        process_workers: int | None = None,
        max_pending: int | None = None,
        shutdown_timeout: float | None = None,
        loop_block_threshold: float | None = None,
        process_priority: Literal["normal", "low", "idle"] | None = None,
        prestart_workers: bool | None = None,
        auto_promote: bool | None = None,
        timeout: float | None = None,
        status_capacity: int | None = None,
        key_ttl: float | None = None,
        routes: dict[str, LaneName] | None = None,
        store: str | None = None,
        store_lease: float | None = None,
        store_retention: float | None = None,
        secret_key: str | None = None,
        store_timeout: float | None = None,
        keep_result: bool | None = None,
        result_max_bytes: int | None = None,
        wait_for_tasks: bool | None = None,
        tracing: bool | None = None,
    ) -> None:
        # The keywords above are the options (a test checks they match `OffloadConfig`):
        # read back from the frame instead of listed a second time.
        given = {name: value for name, value in locals().items() if name in _OPTION_NAMES}
        if isinstance(backend, str):
            given["backend"] = backend
        self.config = OffloadConfig.resolve({k: v for k, v in given.items() if v is not None})
        self._runtime = Runtime(
            self.config, build_backend(self.config, backend), build_store(self.config)
        )
        self._lifecycle = Lifecycle(self._runtime)
        self._started = False

    def __repr__(self) -> str:
        backend = self.backend.name if self.backend else "local"
        return f"Offload(backend={backend!r}, running={self.running}, config={self.config!r})"

    @property
    def backend(self) -> Backend | None:
        """The remote backend, or `None` when every task runs locally."""
        return self._runtime.backend

    @property
    def running(self) -> bool:
        """Started and accepting tasks (not yet shutting down)."""
        return self._started and self._runtime.accepting

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._started:
            raise RuntimeError("this Offload is already running; start it once")
        await self._lifecycle.open(detached=True)
        self._started = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._started:
            return
        try:
            await self._lifecycle.close()
        finally:
            self._started = False

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[dict[str, Any]]:
        """Run the runtime for the app's lifetime: `FastAPI(lifespan=offload.lifespan)`.

        To keep a lifespan of your own, enter this one inside it, passing the app:
        `async with offload.lifespan(app): yield`. On shutdown it stops accepting tasks,
        lets them finish within `shutdown_timeout`, then cancels and logs the rest.
        """
        if app is not None:
            self._runtime.serve(app)
        async with self:
            # Where requests find it: the ASGI lifespan state reaches mounted sub-apps
            # too; `app.state` serves a lifespan of the user's that yields no state.
            state = getattr(app, "state", None)
            if state is not None:
                setattr(state, STATE_KEY, self)
                setattr(state, RUNTIME_KEY, self._runtime)
            try:
                yield {STATE_KEY: self, RUNTIME_KEY: self._runtime}
            finally:
                if state is not None and getattr(state, STATE_KEY, None) is self:
                    delattr(state, STATE_KEY)
                    delattr(state, RUNTIME_KEY)

    # -- outside requests -------------------------------------------------------------

    async def submit(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Offload a call outside a request (a script, a websocket, a startup job).

        It starts at once; raises what `add_task` raises, and `BackendUnavailable`.
        """
        return await self._submit(func, args, kwargs, NO_SETTINGS)

    def options(self, **options: Unpack[CallOptions]) -> RuntimeOptions:
        """Per-call settings for `submit`: `await offload.options(timeout=5).submit(f, x)`.

        `owner` records who started the task, as `tasks.options(owner=...)` does;
        `delay=` and `at=` schedule it, as `tasks.options(delay=...)` does; `key`
        deduplicates as `tasks.options(key=...)` does (a held key returns its task's
        handle, `existing=True`, and starts nothing). Raises `ConfigError` for a bad value,
        naming the setting.
        """
        return RuntimeOptions(self, TaskSettings.of_call("offload.options", options))

    async def _submit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskSettings,
    ) -> TaskHandle:
        refuse_coroutine(func, "submit")
        if not self._started:
            raise OffloadClosed(
                "this Offload is not running (not started yet, or stopped): `submit` needs a "
                "running runtime; start it "
                "with FastAPI(lifespan=offload.lifespan) or `async with offload:`"
            )
        runtime = self._runtime
        record = runtime.admit(func, args, kwargs, options)
        if isinstance(record, TaskHandle):
            return record  # `options(key=...)`: the task holding the key; nothing started
        await runtime.commit([record])  # a durable store has it (and a broker, if remote)
        if runtime.is_local(record):
            runtime.start(record)
        return TaskHandle(record.id, record.name, record.lane)

    # -- periodic tasks -------------------------------------------------------------

    def every(
        self,
        *,
        seconds: float,
        catch_up: bool = False,
        overlap: bool = False,
        **settings: Unpack[TaskOptions],
    ) -> Callable[[F], F]:
        """Run the decorated module-level function every `seconds` while this Offload
        runs, as an ordinary task with `settings` (those of `@task`). Ticks fall on the
        multiples of `seconds` since the epoch (3600: on the hour, UTC) in every process.

        With a durable store one process of those sharing it runs each tick; with the
        memory store, each process. `catch_up=True` runs at start-up a tick missed while
        no process ran (else skipped); `overlap=True` starts a tick while the previous run
        is live (else it is skipped with a WARNING). Returns the function unchanged;
        raises `NotOffloadable` for one that is not module-level or needs arguments.
        """
        return self._runtime.periodic.declare(
            "every", Every(seconds), catch_up=catch_up, overlap=overlap, settings=settings
        )

    def cron(
        self,
        expression: str,
        /,
        *,
        catch_up: bool = False,
        overlap: bool = False,
        **settings: Unpack[TaskOptions],
    ) -> Callable[[F], F]:
        """Run the decorated module-level function at the times of a cron `expression`
        (`"*/5 * * * *"`: every 5 minutes), evaluated in UTC, as `every` does otherwise.

        Needs the `cron` extra (croniter): without it, raises `ImportError` naming it. A
        bad expression is a `ConfigError`.
        """
        return self._runtime.periodic.declare(
            "cron", Cron(expression), catch_up=catch_up, overlap=overlap, settings=settings
        )

    async def schedules(self) -> list[ScheduleInfo]:
        """Each periodic task with its schedule, next run and last run (tick, task id,
        state), read from the store: with a durable one, the runs of every process
        sharing it. Raises `StoreUnavailable` when it cannot be read in time."""
        self._check_store_open()
        return await schedules(self._runtime)

    # -- queries ----------------------------------------------------------------------

    async def join(self) -> None:
        """Wait until no task accepted here is scheduled, pending or running (tests and
        scripts): a scheduled task is waited for until it is due and has ended."""
        await self._runtime.ledger.join()

    async def status(self, task_id: str) -> TaskInfo:
        """The task's `TaskInfo`; state `unknown` for an id this runtime never saw.

        Remote tasks are looked up in the backend (off the event loop). Raises
        `OffloadClosed` for a durable store that was never opened (no lifespan ran), and
        `StoreUnavailable` (a 503 with `Retry-After` inside a request) when a durable
        store cannot be read within `store_timeout`: "could not ask" is never `unknown`.
        """
        self._check_store_open()
        return await self._runtime.status(task_id)

    async def cancel(self, task_id: str) -> bool:
        """Cancel a task by id; `True` if it was scheduled, pending or running, `False`
        for an id that is unknown or already ended.

        A scheduled or waiting task never starts; a loop task is cancelled at its next `await`; a
        process task's worker (and what it started) is killed; a thread task, which
        cannot be interrupted, sees `cancelled()` turn true and ends `cancelled` when
        its function returns. The state becomes `cancelled` ("cancelled by request").
        With a durable store, a task running in another worker process is cancelled
        there within a second; a remote task is revoked in its backend. Raises
        `StoreUnavailable` or `BackendUnavailable` when the owner cannot be reached.
        """
        self._check_store_open()
        return await self._runtime.cancel(task_id)

    def _check_store_open(self) -> None:
        if self.config.durable_store and not self._runtime.detached:
            raise OffloadClosed(
                f"this Offload's store ({self.config.store!r}) was never opened: start it "
                "with FastAPI(lifespan=offload.lifespan) or `async with offload:` first"
            )

    def stats(self) -> OffloadStats:
        """Counters per lane, loop-block reports, process-worker crashes and CPU time."""
        return self._runtime.stats()


class RuntimeOptions:
    """`offload.options(...)`: submit calls with per-call lane, timeout and retries."""

    def __init__(self, offload: Offload, options: TaskSettings) -> None:
        self._offload = offload
        self._options = options

    async def submit(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Like `Offload.submit`, with these settings."""
        return await self._offload._submit(func, args, kwargs, self._options)
