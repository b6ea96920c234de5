"""Start and stop of a `Runtime`, and which runtimes were started on this event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import anyio
from anyio.lowlevel import RunVar

from .._call_key import load_key
from .._config import OffloadConfig
from .._errors import ConfigError
from .._logging import show_logs
from ..backends.base import Backend
from ..stores.base import Store
from ..stores.lease_owner import new_owner_id
from ..stores.memory import MemoryStore
from ..stores.peers import ProcessFigures, figures_of
from .host_cores import CoresCheck
from .periodic import Scheduler
from .runtime import Runtime
from .schedule import put_off

__all__ = ["Lifecycle", "build_backend", "build_store", "started_on_this_loop"]

logger = logging.getLogger("fastapi_offload")

CANCEL_POLL = 0.5  # seconds: a cancel asked through another process acts within a second


class Lifecycle:
    """Start and stop of a `Runtime` (kept apart from the per-task interface above)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._background: list[asyncio.Task[None]] = []
        self._started_at = time.time()
        self._host = socket.gethostname()
        self.cores = CoresCheck(self._host)
        self._scheduler = Scheduler(runtime)

    async def open(self, *, detached: bool) -> None:
        runtime = self._runtime
        show_logs()  # again: the app may have configured logging since it built its Offload
        if detached:
            async with AsyncExitStack() as undo:  # what started is stopped if a later step fails
                await runtime.store.open()
                undo.push_async_callback(_shielded, runtime.store.close)
                if runtime.store.durable:
                    config = runtime.config
                    runtime.requeue.calls.key = await anyio.to_thread.run_sync(
                        load_key, config.secret_key, config.store_path
                    )
                if runtime.backend is not None:
                    await runtime.backend.start()
                    undo.push_async_callback(_shielded, runtime.backend.stop)
                if runtime.config.prestart_workers:
                    await runtime.process_lane.prestart()
                undo.pop_all()
            loop = asyncio.get_running_loop()
            if runtime.config.prestart_workers:
                self._background.append(
                    loop.create_task(
                        runtime.process_lane.keep_warm(runtime.idle), name="offload:keep-warm"
                    )
                )
            if runtime.store.durable:
                self._background.append(loop.create_task(self._upkeep(), name="offload:leases"))
                self._background.append(
                    loop.create_task(self._watch_cancels(), name="offload:cancels")
                )
            runtime.monitor.start()
        runtime.attach(detached=detached)
        if detached:
            _started_here().add(runtime)
            logger.info("%s", lane_sizes(runtime))
            try:  # what a process that stopped left unfinished; else the upkeep retries
                await self._reclaim()
            except Exception as exc:
                logger.error(
                    "task store %r: could not reclaim tasks at start-up: %s", runtime.store, exc
                )
            self._scheduler.start()  # periodic tasks, if any were declared

    async def _upkeep(self) -> None:
        # The heartbeat of this process's leases, and the reclaim of the tasks of
        # processes that stopped renewing theirs (a peer worker, or this app's previous
        # run): every third of the lease.
        # The lane figures go with each renewal (`stores.peers`), and a first time at once, so
        # that a new process shows on every dashboard without waiting a third of a lease.
        store, lease = self._runtime.store, self._runtime.config.store_lease
        healthy_since: float | None = time.monotonic()
        first = True
        while True:
            if not first:
                await anyio.sleep(lease / 3)
            first = False
            try:
                await store.renew(self._figures())
                await self._check_cores()
                healthy_since = healthy_since or time.monotonic()
                # After an outage every process missed its renewals: reclaim only once
                # the others had a whole lease to renew theirs, or live peers lose tasks.
                if time.monotonic() - healthy_since >= lease:
                    await self._reclaim()
            except Exception as exc:
                healthy_since = None
                logger.error(
                    "task store %r: could not renew leases or reclaim tasks: %s", store, exc
                )

    async def _check_cores(self) -> None:
        if self.cores.warned:
            return  # once: no more reads
        try:
            self.cores.check(await self._runtime.store.processes())
        except Exception as exc:  # a warning's read must not hold up the leases
            logger.debug("could not read the processes' figures: %s", exc)

    def _figures(self) -> ProcessFigures:
        return figures_of(
            self._runtime.stats(),
            host=self._host,
            pid=os.getpid(),
            started_at=self._started_at,
            at=time.time(),
        )

    async def _watch_cancels(self) -> None:
        # Cancels asked of this process's tasks through the shared store (by a request
        # another worker process served): polled while this process runs tasks, so an
        # idle app makes no queries.
        runtime, failing = self._runtime, False
        while True:
            await anyio.sleep(CANCEL_POLL)
            if not runtime.ledger.active:
                continue
            try:
                runtime.cancel_requested(await runtime.store.cancel_requests())
                failing = False
            except Exception as exc:
                if not failing:  # once per outage, not twice a second
                    logger.error(
                        "task store %r: could not read cancel requests: %s", runtime.store, exc
                    )
                failing = True

    async def _reclaim(self) -> None:
        if not self._runtime.accepting:
            return  # shutting down: what is reclaimed now could not run; leave it to a peer
        runtime, adopted = self._runtime, []
        for orphan in await runtime.store.reclaim():
            if orphan.requeued:
                if (record := runtime.adopt(orphan)) is not None:
                    adopted.append(record)
            else:
                logger.warning(
                    "task %s (id %s) is interrupted: %s",
                    orphan.info.name,
                    orphan.info.id,
                    orphan.info.error,
                )
        if not adopted:
            return
        # A cancel asked while the task's process was dead waits on its row: honour it
        # before the task starts again, not half a second into its rerun.
        try:
            runtime.cancel_requested(await runtime.store.cancel_requests())
        finally:
            for record in adopted:
                runtime.start(record)

    async def close(self) -> None:
        """Stop accepting, let tasks finish within `shutdown_timeout`, cancel the rest.

        The whole wait is bounded by `shutdown_timeout`: tasks get it less a cancel
        grace of min(1 s, 10 %) to finish, then are cancelled and given the grace.
        Scheduled tasks (not due yet) are not waited for: a durable store keeps them
        for the process that reclaims them; the memory store's are cancelled at once.
        """
        runtime = self._runtime
        # Before the runtime closes: a tick being claimed is started, not left claimed.
        with anyio.CancelScope(shield=True):
            await self._scheduler.stop()
        runtime.close()
        put_off(runtime.ledger)
        timeout = runtime.config.shutdown_timeout
        grace = min(1.0, timeout / 10)
        # Shielded: when the host task itself is being cancelled (the server's own
        # shutdown timeout), the drain must still get its chance.
        with anyio.CancelScope(shield=True):
            try:
                if runtime.ledger.active:
                    logger.info(
                        "shutdown: waiting up to %s s for %d task(s)",
                        timeout,
                        runtime.ledger.active,
                    )
                with anyio.move_on_after(timeout - grace):
                    await runtime.ledger.join()
                await runtime.runner.close(grace)
                for task in self._background:
                    task.cancel()
                await asyncio.gather(*self._background, return_exceptions=True)
                self._background.clear()
                await runtime.store.close()  # the last states are written
                if runtime.backend is not None:
                    await runtime.backend.stop()
            finally:
                runtime.monitor.stop()
                _started_here().discard(runtime)


def lane_sizes(runtime: Runtime) -> str:
    """The start-up line: what this process may run at once. Each web process has its
    own lanes, so `uvicorn --workers 2` on 2 cores means 4 CPU workers unless said."""
    config, cpus = runtime.config, os.cpu_count() or 1
    workers = config.effective_process_workers
    how = "one per CPU core" if config.process_workers == 0 else "process_workers"
    backend = f", remote backend {runtime.backend.name}" if runtime.backend is not None else ""
    return (
        f"started in process {os.getpid()}: loop lane up to {config.max_pending} tasks at "
        f"once, thread lane {config.thread_workers} threads, process lane {workers} "
        f"worker processes ({how}; {cpus} CPU cores here), store {runtime.store!r}{backend}. "
        f"These lanes are per web process: `--workers N` runs N times as many workers."
    )


def build_backend(config: OffloadConfig, given: Backend | str | None) -> Backend | None:
    """The backend `Offload(backend=...)` was given, else the configured one, else none."""
    if given is not None and not isinstance(given, str):
        if not isinstance(given, Backend):
            raise ConfigError(
                f"backend={given!r} is not a Backend: pass 'local', 'celery', 'rq' or an "
                "object with name, prepare, submit, status, start and stop"
            )
        return given
    if config.backend == "local":
        return None
    from ..backends import load_backend

    return load_backend(config.backend)


# The detached runtimes started on each event loop: only so that a request that finds
# none of them can say why (see `web.lookup`), never to pick one.
_STARTED: RunVar[weakref.WeakSet[Runtime]] = RunVar("fastapi_offload_started")


def _started_here() -> weakref.WeakSet[Runtime]:
    try:
        return _STARTED.get()
    except LookupError:
        found: weakref.WeakSet[Runtime] = weakref.WeakSet()
        _STARTED.set(found)
        return found


def started_on_this_loop() -> bool:
    """Whether a lifespan (or `async with offload`) started a runtime on this loop."""
    return len(_started_here()) > 0


async def _shielded(stop: Callable[[], Awaitable[None]]) -> None:
    with anyio.CancelScope(shield=True):
        await stop()


def build_store(config: OffloadConfig) -> Store:
    """The store `config.store` names: memory, a SQLite file or a Redis."""
    if not config.durable_store:
        return MemoryStore.of(config)
    owner = new_owner_id()
    lease, capacity, retention = config.store_lease, config.status_capacity, config.store_retention
    timeout, path, key_ttl = config.store_timeout, config.store_path, config.key_ttl
    if path is not None:
        from ..stores.sqlite import SqliteStore

        return SqliteStore(
            path, owner=owner, lease=lease, capacity=capacity, retention=retention,
            timeout=timeout, key_ttl=key_ttl,
        )  # fmt: skip
    from ..stores.redis import RedisStore  # ImportError naming the extra if redis is missing

    return RedisStore(
        config.store,
        owner=owner,
        lease=lease,
        capacity=capacity,
        retention=retention,
        timeout=timeout,
        key_ttl=key_ttl,
    )
