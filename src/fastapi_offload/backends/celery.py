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
import time
from collections.abc import Callable, Mapping
from types import EllipsisType
from typing import Any

import anyio
import anyio.to_thread

try:
    from celery import Celery
    from celery.backends.base import BaseKeyValueStoreBackend
    from celery.exceptions import SoftTimeLimitExceeded
    from kombu.exceptions import OperationalError
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        'the Celery backend needs Celery: pip install "fastapi-offload[celery]"'
    ) from exc

from .._errors import ConfigError, TaskTimeout
from .._models import TaskCall, TaskInfo, TaskState
from ._payload import Serializer, check_call
from ._registry import Target, TaskRegistry
from ._settings import (
    RemoteSettings,
    backend_unavailable,
    check_serializer,
    check_timeout,
    safe_url,
    to_timestamp,
)
from ._worker import portable_result, run_callable
from .base import BaseBackend

__all__ = ["SUBMITTED", "CeleryBackend", "celery_worker_app"]

logger = logging.getLogger("fastapi_offload.backends.celery")

#: State written to the result store before a task is published. Celery reports an id
#: it has no record of as PENDING, so "queued" and "never submitted" look alike; with
#: this marker, PENDING from the store means "not submitted through this backend".
SUBMITTED = "SENT"

# Per-call settings travel as message headers, never in the task's own kwargs;
# Celery copies custom headers onto `task.request` and keeps them across retries.
_RETRIES = "offload_retries"
_RETRY_DELAY = "offload_retry_delay"
_TIMEOUT = "offload_timeout"
# The soft limit raises inside the task; the hard limit, this much later, kills the
# pool process when the task ignores the soft one (e.g. stuck in C code).
_HARD_LIMIT_GRACE = 5.0
_REDIS = ("redis://", "rediss://")

_STATES = {
    SUBMITTED: TaskState.PENDING,
    "PENDING": TaskState.PENDING,
    "RECEIVED": TaskState.PENDING,
    "RETRY": TaskState.PENDING,
    "STARTED": TaskState.RUNNING,
    "SUCCESS": TaskState.SUCCEEDED,
    "FAILURE": TaskState.FAILED,
    "REJECTED": TaskState.FAILED,
    "REVOKED": TaskState.CANCELLED,
    "IGNORED": TaskState.SUCCEEDED,
}


class CeleryBackend(BaseBackend):
    """Submit calls to Celery workers; look their state up in Celery's result store.

    `submit` writes a `SENT` marker to the result store, then publishes the task, both
    in a worker thread bounded by this backend's own limiter; a broker or store that
    cannot be reached within `broker_timeout` raises `BackendUnavailable`.
    `status` returns `None` for an id that was never submitted (or whose record
    expired after `result_ttl`), and always `None` when no result backend is set.

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
        max_threads: int = 8,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._serializer = check_serializer(serializer)
        self._timeout = check_timeout(broker_timeout, "broker_timeout")
        if not queue:
            raise ConfigError("queue='' is not a queue name; leave it unset for 'celery'")
        if result_backend is ...:
            result_backend = broker_url if broker_url.startswith(_REDIS) else None
        self._queue = queue
        self._broker_url = broker_url
        self._result_url = result_backend
        self._limiter = anyio.CapacityLimiter(max_threads)
        common = _client_conf(self._serializer, self._timeout, queue, result_ttl)
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
            self._results_app.conf.update(common, result_backend=result_backend)
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

        Raises `BackendUnavailable` when the result store cannot be reached.
        """
        if self._results is None:
            return None
        meta = await anyio.to_thread.run_sync(self._meta, task_id, limiter=self._limiter)
        return task_info(task_id, meta, self.name)

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
                self._write_marker(call)
            except self._store_errors() as exc:
                raise backend_unavailable(
                    self.name,
                    self._result_url or "",
                    exc,
                    f"{call.name} (id {call.id}) was not submitted",
                ) from exc
        limits: dict[str, float] = {}
        if call.timeout is not None:
            limits = {
                "soft_time_limit": call.timeout,
                "time_limit": call.timeout + _HARD_LIMIT_GRACE,
            }
        try:
            self._publisher.send_task(
                call.name,
                args=list(call.args),
                kwargs=dict(call.kwargs),
                task_id=call.id,
                queue=self._queue,
                headers={
                    _RETRIES: call.retries,
                    _RETRY_DELAY: call.retry_delay,
                    _TIMEOUT: call.timeout,
                },
                retry=True,
                retry_policy=_publish_retry_policy(),
                **limits,
            )
        except (OperationalError, OSError) as exc:
            self._forget(call.id)
            raise backend_unavailable(
                self.name, self._broker_url, exc, f"{call.name} (id {call.id}) was not submitted"
            ) from exc

    def _write_marker(self, call: TaskCall) -> None:
        marker = {"name": call.name, "submitted_at": time.time()}
        store = self._results
        if isinstance(store, BaseKeyValueStoreBackend):
            # One round trip instead of `store_result`'s two: its read-before-write
            # guards against overwriting a SUCCESS, which a fresh id cannot have.
            meta: dict[str, Any] = {
                "status": SUBMITTED,
                "result": marker,
                "traceback": None,
                "children": [],
                "date_done": None,
                "task_id": call.id,
            }
            store.set(store.get_key_for_task(call.id), store.encode(meta))
        else:
            store.store_result(call.id, marker, SUBMITTED)

    def _meta(self, task_id: str) -> Mapping[str, Any]:
        try:
            meta: Mapping[str, Any] = self._results.get_task_meta(task_id)
        except self._store_errors() as exc:
            raise backend_unavailable(
                self.name, self._result_url or "", exc, f"the status of {task_id} is not known"
            ) from exc
        return meta

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


def task_info(task_id: str, meta: Mapping[str, Any], lane: str) -> TaskInfo | None:
    """Map a Celery result-store record onto `TaskInfo`; `None` when there is none."""
    status = str(meta.get("status", "PENDING"))
    if status == "PENDING":
        # No record at all: Celery cannot tell "queued" from "never existed", and a
        # task submitted through this backend always has at least the SENT marker.
        return None
    result = meta.get("result")
    marker = result if status == SUBMITTED and isinstance(result, Mapping) else {}
    name = meta.get("name") or marker.get("name") or ""
    retries = meta.get("retries")
    state = _STATES.get(status, TaskState.RUNNING)  # custom states: set by a running task
    attempts = 0
    if status not in (SUBMITTED, "RECEIVED"):
        attempts = (retries if isinstance(retries, int) else 0) + 1
    error = None
    if status in ("FAILURE", "RETRY", "REJECTED"):
        error = repr(result) if isinstance(result, BaseException) else str(result)
    return TaskInfo(
        id=task_id,
        name=str(name),
        state=state,
        lane=lane,
        created_at=_number(marker.get("submitted_at")),
        finished_at=to_timestamp(meta.get("date_done")) if state.finished else None,
        attempts=attempts,
        error=error,
    )


def celery_worker_app(
    *targets: Target,
    broker_url: str | None = None,
    result_backend: str | None = None,
    queue: str | None = None,
    serializer: Serializer | None = None,
    config: Mapping[str, Any] | None = None,
) -> Any:
    """A Celery app whose worker runs exactly the given tasks, for `celery -A ... worker`.

    `targets` are task functions, or modules whose `@task` / `@cpu_bound` /
    `@io_bound` functions are registered; each is registered under the name the
    web process sends (`module.qualname`). Settings not given here come from the
    same `OFFLOAD_*` variables the web process reads. The worker accepts JSON
    messages only, unless `serializer="pickle"`: with pickle, anyone who can write
    to the broker can run code on the worker, so choose it only for a trusted broker.
    `config` is applied last (any Celery setting). Raises `ConfigError` for a bad
    target or setting.

    Timeouts use Celery's soft limit (the task gets `TaskTimeout`) and, 5 s later,
    its hard limit; both need the prefork pool, Celery's default. Retries are sent
    again by the worker with `countdown=retry_delay`. `async def` tasks run with
    `asyncio.run` in the pool process. The app stores extended results (task name,
    retry count, and also the arguments) for `result_ttl`; pass
    `config={"result_extended": False}` to keep arguments out of the result store.
    """
    settings = RemoteSettings.from_env()
    chosen = check_serializer(serializer or settings.serializer)
    registry = TaskRegistry(*targets)
    app = Celery("fastapi_offload", set_as_current=False)
    app.conf.update(
        broker_url=broker_url or settings.celery_broker_url,
        result_backend=result_backend or settings.celery_result_backend,
        task_serializer=chosen,
        result_serializer=chosen,
        accept_content=[chosen],
        result_accept_content=[chosen],
        task_default_queue=queue or settings.celery_queue,
        result_expires=settings.result_ttl,
        # STARTED is what lets status say `running`; the extended result keeps the
        # task's name and retry count next to its state.
        task_track_started=True,
        result_extended=True,
        # Long CPU tasks: do not let one pool process hoard queued messages.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
    )
    app.conf.update(config or {})
    for name, func in registry.items():
        app.task(name=name, bind=True)(_task_body(name, func, chosen))
    return app


def _task_body(name: str, func: Callable[..., Any], serializer: str) -> Callable[..., Any]:
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        try:
            return portable_result(name, run_callable(func, args, kwargs), serializer)
        except SoftTimeLimitExceeded as exc:
            error: Exception = TaskTimeout(
                f"{name} ran longer than its timeout of {getattr(request, _TIMEOUT, None)} s "
                "and was stopped"
            )
            error.__cause__ = exc
        except Exception as exc:
            error = exc
        allowed = _whole(getattr(request, _RETRIES, 0))
        if request.retries < allowed:
            delay = _number(getattr(request, _RETRY_DELAY, None))
            raise self.retry(
                exc=error, countdown=1.0 if delay is None else delay, max_retries=allowed
            )
        raise error

    run.__name__ = name.rpartition(".")[2]
    run.__qualname__ = name
    run.__doc__ = func.__doc__
    return run


def _client_conf(serializer: str, timeout: float, queue: str, result_ttl: int) -> dict[str, Any]:
    return {
        "task_serializer": serializer,
        "result_serializer": serializer,
        "accept_content": [serializer],
        "result_accept_content": [serializer],
        "task_default_queue": queue,
        "result_expires": result_ttl,
        "broker_connection_timeout": timeout,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
        },
        "redis_socket_connect_timeout": timeout,
        "redis_socket_timeout": timeout,
        # The Redis result backend retries a failed write 20 times, a second apart, by
        # default: a 20 s hang in the request. One quick retry, then 503.
        "result_backend_transport_options": {"retry_policy": _publish_retry_policy()},
    }


def _publish_retry_policy() -> dict[str, float]:
    return {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def _whole(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
