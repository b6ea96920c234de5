"""Celery backend: tasks travel to a Celery worker by registered name, with JSON arguments.

Web process: `Offload(backend="celery")` (or `OFFLOAD_BACKEND=celery`), configured by
the `OFFLOAD_*` variables listed in `fastapi_offload.backends`, or
`Offload(backend=CeleryBackend(...))`.

Worker: a module builds the worker app from the task functions (or the modules
defining them) it agrees to run, and Celery's own command runs it::

    # myapp/celery_worker.py
    from fastapi_offload.backends.celery import celery_worker_app
    from myapp import jobs

    app = celery_worker_app(jobs)

    $ celery -A myapp.celery_worker worker --pool=prefork

A message naming any other task is refused by Celery itself ("Received unregistered
task", logged as an error) and the task is marked failed with `NotRegistered`.

A broker that keeps no results (RabbitMQ) needs `OFFLOAD_CELERY_RESULT_BACKEND` (or
`none`): both sides refuse to start without it, rather than leave every status at
`pending` (the reasons are in `urls.result_store`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Mapping
from types import EllipsisType
from typing import Any

import anyio
import anyio.to_thread

from ..._extras import install_hint

try:
    import celery  # noqa: F401  # first, so that without the extra this fails with the hint
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(f"the Celery backend needs Celery: {install_hint('celery')}") from exc

from ..._errors import ConfigError
from ..._models import TaskCall, TaskInfo
from ..._remote_settings import (
    DEFAULT_RESULT_MAX_BYTES,
    RemoteSettings,
    celery_result_choice,
    named_variable,
    safe_url,
)
from .._client import by_task_id, check_settings
from .._liveness import count_within, report_workers
from .._payload import Serializer, check_call
from ..base import BaseBackend
from .clients import CeleryClients
from .conf import check_delay, client_conf
from .results import SUBMITTED as SUBMITTED
from .results import task_info as task_info
from .urls import celery_variables, check_broker_url, result_store
from .worker import celery_worker_app as celery_worker_app

__all__ = ["SUBMITTED", "CeleryBackend", "celery_worker_app"]

logger = logging.getLogger("fastapi_offload.backends.celery")

# How long workers are given to answer "which queues do you consume": Celery's own
# `inspect` default. Every live worker answers within it unless the broker is slow.
_ANSWER_WINDOW = 1.0


class CeleryBackend(BaseBackend):
    """Submit calls to Celery workers; look their state up in Celery's result store.

    `submit` writes a `SENT` marker to the result store, then publishes the task, both
    in a worker thread bounded by this backend's own limiter; a broker or store that
    cannot be reached within `broker_timeout` raises `BackendUnavailable`.
    `status` returns `None` for an id that was never submitted (or whose record
    expired after `result_ttl`), for any id fastapi-offload did not make (32 lowercase
    hex digits), and always `None` when no result backend is set. It carries the
    task's return value (`result`, JSON data of at most `result_max_bytes`) once it
    succeeded, and its last `report_progress()` while it runs; Celery replaces the
    record when the task ends, so progress is not kept past the end.

    A delayed call (`options(delay=/at=)`) is published at once with Celery's `eta`: a
    worker receives it and holds it until it is due, and its status reads `scheduled`
    until then. With a Redis broker a delay beyond the broker's `visibility_timeout`
    (3600 s unless `config` says otherwise) is refused: Redis would redeliver it.

    `result_backend` defaults to the broker URL when that is Redis; with another broker
    it must be given (`None` runs without a store, on purpose). `queue` must be the
    queue the workers consume (their `task_default_queue`); `max_threads` bounds the
    threads running blocking client calls; `config` is any further Celery settings for
    the client apps. Raises `ConfigError` for a bad setting, and for a broker that keeps
    no results (RabbitMQ) without a `result_backend`, or `rpc://`, which is not a store.
    """

    name = "celery"
    cancels = True
    counts_workers = True
    #: A delayed call is sent at once with Celery's `eta`; a worker holds it until then.
    delays = True

    def __init__(
        self,
        *,
        broker_url: str,
        result_backend: str | EllipsisType | None = ...,
        queue: str = "celery",
        serializer: Serializer = "json",
        broker_timeout: float = 3.0,
        result_ttl: int = 86400,
        result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
        max_threads: int = 8,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._serializer, self._result_max_bytes, self._timeout = check_settings(
            serializer=serializer,
            result_max_bytes=result_max_bytes,
            broker_timeout=broker_timeout,
            queue=queue,
            default_queue="celery",
        )
        self._queue = queue
        self._broker_url = check_broker_url(broker_url)
        self._result_url = result_store(broker_url, result_backend)
        self._limiter = anyio.CapacityLimiter(max_threads)
        common = client_conf(self._serializer, self._timeout, queue, result_ttl)
        common.update(config or {})
        self._clients = CeleryClients(broker_url, self._result_url, common, self._timeout)
        self._publisher = self._clients.publisher
        self._results: Any = self._clients.results
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CeleryBackend:
        """Build from the `OFFLOAD_*` variables (see `fastapi_offload.backends`)."""
        source = os.environ if environ is None else environ
        env = RemoteSettings.from_env(source)
        given = celery_result_choice(source)
        try:
            return cls(
                broker_url=env.celery_broker_url,
                # Unset stays unset (`...`): the constructor decides, and refuses a broker
                # that keeps no results.
                result_backend=... if given is ... else env.celery_result_backend,
                queue=env.celery_queue,
                serializer=env.serializer,
                broker_timeout=env.broker_timeout,
                result_ttl=env.result_ttl,
                result_max_bytes=env.result_max_bytes,
            )
        except ConfigError as exc:
            raise named_variable(exc, source, celery_variables(source)) from None

    def __repr__(self) -> str:
        results = safe_url(self._result_url) if self._result_url else None
        return (
            f"CeleryBackend(broker_url={safe_url(self._broker_url)!r}, "
            f"result_backend={results!r}, queue={self._queue!r}, "
            f"serializer={self._serializer!r})"
        )

    def prepare(self, call: TaskCall) -> None:
        """Raise `NotOffloadable` naming the argument that cannot travel to a worker, or
        a delay a Redis broker would not honour once (see `delays`)."""
        check_call(call, backend=self.name, serializer=self._serializer)
        check_delay(call, self._broker_url, self._publisher)

    async def submit(self, call: TaskCall) -> None:
        """Return once the broker holds the task; raise `BackendUnavailable` otherwise."""
        await anyio.to_thread.run_sync(self._submit, call, limiter=self._limiter)

    async def status(self, task_id: str) -> TaskInfo | None:
        """The task's state in Celery's result store, or `None` if it has no record.

        An id fastapi-offload did not make is unknown (`None`) without asking the
        store, and so is a record this process cannot read (logged at WARNING).
        Raises `BackendUnavailable` when the result store cannot be reached, and
        nothing else.
        """
        if self._results is None:
            return None
        return await by_task_id(task_id, self._status, None, self._limiter)

    async def cancel(self, task_id: str) -> bool:
        """Revoke the task: one not started yet never starts, and the pool process running
        a started one is terminated (SIGTERM). Its status becomes `cancelled`, with
        `error` "cancelled by request" (at once for a task not started yet).

        Returns `False`, and sends nothing, for an id the result store has no record of
        (never submitted, expired, or not an id fastapi-offload makes) and for a task
        that already ended. Without a result store neither can be checked: the revoke
        is sent and `True` returned. Workers keep revoked ids in memory, so a task
        queued while no worker runs starts anyway when one comes up, unless the workers
        keep state (`celery worker --statedb`). Raises `BackendUnavailable` when the
        broker or the result store cannot be reached.
        """
        return await by_task_id(task_id, self._clients.cancel, False, self._limiter)

    async def workers(self) -> int | None:
        """How many live workers consume this backend's queue; `None` when it cannot tell
        (the broker cannot be reached, or did not answer in time).

        Asks Celery's remote control (`inspect active_queues`) and gives the workers a
        second to answer, so it takes about a second; a worker started with remote
        control disabled counts as none. Never raises.
        """
        count = functools.partial(self._clients.count_workers, self._queue, _ANSWER_WINDOW)
        # The window, plus a connect and a publish that may each take `broker_timeout`.
        limit = _ANSWER_WINDOW + 2 * self._timeout + 0.5
        return await count_within(count, limit, self._limiter)

    async def start(self) -> None:
        """Connect to the broker once, so a wrong URL is logged at startup (not raised);
        then, in the background, log a WARNING if no worker consumes the queue."""
        reachable = await anyio.to_thread.run_sync(
            self._clients.check_broker, limiter=self._limiter
        )
        if not reachable:
            return  # already said; whether workers run cannot be told either
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio): ask now, start-up waits the window
            await self._report_workers()
            return
        # In the background: the answer takes `_ANSWER_WINDOW`, which start-up (and a test
        # suite starting apps) should not wait for.
        if self._watch is not None:
            self._watch.cancel()  # started twice: the newer question is enough
        self._watch = loop.create_task(self._report_workers(), name="offload:celery-workers")

    async def stop(self) -> None:
        """Close the broker and result store connections."""
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.wait([self._watch])  # returns, rather than raise, once it ended
            self._watch = None
        await anyio.to_thread.run_sync(self._clients.close, limiter=self._limiter)

    async def _report_workers(self) -> None:
        command = f"celery -A <worker module> worker -Q {self._queue}"
        report_workers(
            logger,
            await self.workers(),
            backend=self.name,
            queue=self._queue,
            url=self._broker_url,
            command=f"{command} (the module that calls celery_worker_app, with the same "
            "OFFLOAD_* variables)",
        )

    # -- blocking parts, always run in a worker thread -----------------------------

    def _submit(self, call: TaskCall) -> None:
        # A method of its own: benchmarks/enqueue_cost.py times it without the thread hop.
        self._clients.submit(call, self._queue)

    def _status(self, task_id: str) -> TaskInfo | None:
        # Here rather than on the loop: reading the result re-encodes it (up to
        # `result_max_bytes` of JSON) to check that it is kept.
        meta = self._clients.meta(task_id, "its status is not known")
        if meta is None:
            return None
        return task_info(task_id, meta, self.name, result_max_bytes=self._result_max_bytes)


# Tracebacks and docs show the public path of what is defined in private modules.
for _public in (celery_worker_app, task_info):
    _public.__module__ = __name__
del _public
