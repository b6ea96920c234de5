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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import EllipsisType
from typing import Any

import anyio
import anyio.to_thread

try:
    from celery import Celery
    from kombu.exceptions import OperationalError
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        'the Celery backend needs Celery: pip install "fastapi-offload[celery]"'
    ) from exc

from .._errors import ConfigError
from .._models import TaskCall, TaskInfo
from ._celery_conf import client_conf, publish_retry_policy, send_options
from ._celery_results import SUBMITTED as SUBMITTED
from ._celery_results import UNREADABLE, cancellable, write_marker, write_revoked
from ._celery_results import task_info as task_info
from ._celery_worker import celery_worker_app as celery_worker_app
from ._ids import is_task_id
from ._payload import Serializer, check_call
from ._settings import (
    DEFAULT_RESULT_MAX_BYTES,
    RemoteSettings,
    backend_unavailable,
    check_max_bytes,
    check_serializer,
    check_timeout,
    safe_url,
)
from .base import BaseBackend

__all__ = ["SUBMITTED", "CeleryBackend", "celery_worker_app"]

logger = logging.getLogger("fastapi_offload.backends.celery")

_REDIS = ("redis://", "rediss://")


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

    `result_backend` defaults to the broker URL when that is Redis (else none);
    `queue` must be the queue the workers consume (their `task_default_queue`);
    `max_threads` bounds the threads running blocking client calls; `config` is any
    further Celery settings for the client apps. Raises `ConfigError` for a bad setting.
    """

    name = "celery"

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
        self._serializer = check_serializer(serializer)
        self._result_max_bytes = check_max_bytes(result_max_bytes, "result_max_bytes")
        self._timeout = check_timeout(broker_timeout, "broker_timeout")
        if not queue:
            raise ConfigError("queue='' is not a queue name; leave it unset for 'celery'")
        if result_backend is ...:
            result_backend = broker_url if broker_url.startswith(_REDIS) else None
        self._queue = queue
        self._broker_url = broker_url
        self._result_url = result_backend
        self._limiter = anyio.CapacityLimiter(max_threads)
        common = client_conf(self._serializer, self._timeout, queue, result_ttl)
        common.update(config or {})
        # Two apps on purpose: Celery's Redis result backend subscribes to each sent
        # task's result channel (`on_task_call`) and never drains it unless someone
        # waits on the result (celery/celery#5320, #6963), so the publishing app has
        # results disabled and a second app only reads and writes the result store.
        self._publisher = Celery("fastapi_offload.publisher", set_as_current=False)
        self._publisher.conf.update(common, broker_url=broker_url, result_backend=None)
        self._results: Any = None
        self._results_app: Any = None
        if result_backend:
            self._results_app = Celery("fastapi_offload.results", set_as_current=False)
            # Extended: the REVOKED record `cancel` writes keeps the task's name.
            self._results_app.conf.update(
                common, result_backend=result_backend, result_extended=True
            )
            self._results = self._results_app.backend

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CeleryBackend:
        """Build from the `OFFLOAD_*` variables (see `fastapi_offload.backends`)."""
        settings = RemoteSettings.from_env(environ)
        return cls(
            broker_url=settings.celery_broker_url,
            result_backend=settings.celery_result_backend,
            queue=settings.celery_queue,
            serializer=settings.serializer,
            broker_timeout=settings.broker_timeout,
            result_ttl=settings.result_ttl,
            result_max_bytes=settings.result_max_bytes,
        )

    def __repr__(self) -> str:
        results = safe_url(self._result_url) if self._result_url else None
        return (
            f"CeleryBackend(broker_url={safe_url(self._broker_url)!r}, "
            f"result_backend={results!r}, queue={self._queue!r}, "
            f"serializer={self._serializer!r})"
        )

    def prepare(self, call: TaskCall) -> None:
        """Raise `NotOffloadable` naming the argument that cannot travel to a worker."""
        check_call(call, backend=self.name, serializer=self._serializer)

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
        if self._results is None or not is_task_id(task_id):
            return None
        return await anyio.to_thread.run_sync(self._status, task_id, limiter=self._limiter)

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
        if not is_task_id(task_id):
            return False
        return await anyio.to_thread.run_sync(self._cancel, task_id, limiter=self._limiter)

    async def start(self) -> None:
        """Connect to the broker once, so a wrong URL is logged at startup (not raised)."""
        await anyio.to_thread.run_sync(self._check_broker, limiter=self._limiter)

    async def stop(self) -> None:
        """Close the broker and result store connections."""
        await anyio.to_thread.run_sync(self._close, limiter=self._limiter)

    # -- blocking parts, always run in a worker thread -----------------------------

    def _submit(self, call: TaskCall) -> None:
        if self._results is not None:
            # The marker goes in before the message exists, so a worker's STARTED or
            # SUCCESS can never be overwritten by it.
            try:
                write_marker(self._results, call)
            except self._store_errors() as exc:
                raise backend_unavailable(
                    self.name,
                    self._result_url or "",
                    exc,
                    f"{call.name} (id {call.id}) was not submitted",
                ) from exc
        try:
            self._publisher.send_task(
                call.name,
                args=list(call.args),
                kwargs=dict(call.kwargs),
                task_id=call.id,
                queue=self._queue,
                retry=True,
                retry_policy=publish_retry_policy(),
                **send_options(call),
            )
        except (OperationalError, OSError) as exc:
            self._forget(call.id)
            raise backend_unavailable(
                self.name, self._broker_url, exc, f"{call.name} (id {call.id}) was not submitted"
            ) from exc

    def _status(self, task_id: str) -> TaskInfo | None:
        # Here rather than on the loop: reading the result re-encodes it (up to
        # `result_max_bytes` of JSON) to check that it is kept.
        meta = self._meta(task_id, "its status is not known")
        if meta is None:
            return None
        return task_info(task_id, meta, self.name, result_max_bytes=self._result_max_bytes)

    def _cancel(self, task_id: str) -> bool:
        meta = None
        if self._results is not None:
            meta = self._meta(task_id, "the task was not cancelled")
            if not cancellable(meta):
                return False
        try:
            # `terminate`: the worker running it signals its pool process; a worker that
            # has it queued (or receives it later) drops it. Sent to every worker.
            self._publisher.control.revoke(task_id, terminate=True, signal="SIGTERM")
        except (OperationalError, OSError) as exc:
            raise backend_unavailable(
                self.name, self._broker_url, exc, f"task {task_id}: the task was not cancelled"
            ) from exc
        if meta is not None:
            try:
                write_revoked(self._results, task_id, meta)
            except self._store_errors() as exc:
                # The revoke went out: the task will not run, and a worker records
                # REVOKED when the message reaches it.
                logger.warning("could not record task %s as revoked yet (%s)", task_id, exc)
        return True

    def _meta(self, task_id: str, what: str) -> Mapping[str, Any] | None:
        try:
            meta: object = self._results.get_task_meta(task_id)
        except UNREADABLE as exc:
            # Written by something else (or for another serializer): not ours to vouch for.
            logger.warning(
                "the result-store record of %s cannot be read (%s: %s); its status is "
                "answered as unknown",
                task_id,
                type(exc).__name__,
                exc,
            )
            return None
        except self._store_errors() as exc:
            raise backend_unavailable(
                self.name, self._result_url or "", exc, f"task {task_id}: {what}"
            ) from exc
        return meta if isinstance(meta, Mapping) else None

    def _forget(self, task_id: str) -> None:
        if self._results is None:
            return
        try:
            self._results.forget(task_id)
        except self._store_errors():
            # The store is down too; the marker expires with the other results.
            logger.debug("could not remove the SENT marker of %s", task_id)

    def _store_errors(self) -> tuple[type[BaseException], ...]:
        return (*getattr(self._results, "connection_errors", ()), OSError, OperationalError)

    def _check_broker(self) -> None:
        try:
            with self._publisher.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=self._timeout)
        except Exception as exc:
            logger.warning(
                "the Celery broker at %s is not reachable at startup (%s); tasks will be "
                "answered with 503 until it is",
                safe_url(self._broker_url),
                exc,
            )

    def _close(self) -> None:
        self._publisher.close()
        if self._results_app is not None:
            self._results_app.close()


# Tracebacks and docs show the public path of what is defined in private modules.
for _public in (celery_worker_app, task_info):
    _public.__module__ = __name__
del _public
