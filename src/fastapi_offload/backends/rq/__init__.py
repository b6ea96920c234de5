"""RQ backend: tasks travel to an RQ worker by registered name, with JSON arguments.

Web process: `Offload(backend="rq")` (or `OFFLOAD_BACKEND=rq`), configured by the
`OFFLOAD_*` variables listed in `fastapi_offload.backends`, or
`Offload(backend=RQBackend(...))`.

Worker: a module builds a worker class from the task functions (or the modules
defining them) it agrees to run, and RQ's own command runs it::

    # myapp/rq_worker.py
    from fastapi_offload.backends.rq import rq_worker_class
    from myapp import jobs

    Worker = rq_worker_class(jobs)

    $ rq worker --with-scheduler --worker-class myapp.rq_worker.Worker

Given no `--url` (nor `--config`, nor RQ's `REDIS_*` variables), that worker connects to
`OFFLOAD_REDIS_URL`, like the web process; given no queue, it listens on
`OFFLOAD_RQ_QUEUE`. Given another Redis than an `OFFLOAD_REDIS_URL` that is set, it
says so at WARNING: the web process would send tasks where this worker never looks.

A stock RQ worker imports whatever `module.function` a job names; this worker
looks the name up in its registration instead, refuses anything else (the job
fails with `UnregisteredTask`, logged with its traceback) and reads jobs as JSON
only. `--with-scheduler` is needed for retries with a delay and for delayed tasks
(`options(delay=/at=)`): RQ's scheduler enqueues them when due.

What travels besides the job's own arguments (RQ's fields hold timeout, ttl and
retries): `job.meta` keys `offload_retries`, `offload_retry_on` and `offload_due_at`
from the web process, and `offload_progress`, `offload_progress_message` and
`offload_result_not_kept` from the worker; a `retry_backoff` call's doubling delays
are its `Retry` intervals, drawn at submit (whole seconds, as RQ counts them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import anyio
import anyio.to_thread

from ..._extras import install_hint

try:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from rq import Queue, Worker
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(f"the RQ backend needs RQ: {install_hint('rq')}") from exc

from ..._errors import ConfigError
from ..._models import TaskCall, TaskInfo
from ..._remote_settings import (
    DEFAULT_RESULT_MAX_BYTES,
    RemoteSettings,
    backend_unavailable,
    named_variable,
    safe_url,
)
from .._client import by_task_id, check_settings
from .._liveness import count_within, report_workers
from .._payload import Serializer, check_call
from ..base import BaseBackend
from .enqueue import enqueue
from .jobs import cancel_job, read_job
from .jobs import job_info as job_info
from .worker import rq_worker_class as rq_worker_class

__all__ = ["RQBackend", "rq_worker_class"]

logger = logging.getLogger("fastapi_offload.backends.rq")

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class RQBackend(BaseBackend):
    """Enqueue calls on an RQ queue; look their state up in the job's Redis record.

    Every Redis call runs in a worker thread bounded by this backend's own limiter,
    with `broker_timeout` bounding connects and replies: an unreachable Redis raises
    `BackendUnavailable`. `status` returns `None` for an id RQ has no job for (never
    enqueued, or expired after `result_ttl`) and for any id fastapi-offload did not
    make (32 lowercase hex digits), without asking Redis. A succeeded job's status
    carries its return value (`result`, JSON data of at most `result_max_bytes`), and
    any job's its last `report_progress()`, which stays in the record after the end.

    A delayed call (`options(delay=/at=)`) goes on RQ's schedule (`enqueue_at`, due time
    rounded up to the whole second, as RQ counts) and reads `scheduled` until then; it
    is enqueued when due by the scheduler of a worker started `--with-scheduler`, which
    checks every second: without such a worker it never runs.

    `queue` must be a queue the workers listen on; `max_threads` bounds the threads
    running blocking Redis calls. Raises `ConfigError` for a bad setting.
    """

    name = "rq"
    cancels = True
    counts_workers = True
    #: A delayed call is put on RQ's schedule (`enqueue_at`): a worker started
    #: `--with-scheduler` enqueues it when due.
    delays = True

    def __init__(
        self,
        *,
        redis_url: str,
        queue: str = "default",
        serializer: Serializer = "json",
        broker_timeout: float = 3.0,
        result_ttl: int = 86400,
        result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
        max_threads: int = 8,
    ) -> None:
        self._serializer, self._result_max_bytes, timeout = check_settings(
            serializer=serializer,
            result_max_bytes=result_max_bytes,
            broker_timeout=broker_timeout,
            queue=queue,
            default_queue="default",
        )
        self._url = redis_url
        self._timeout = timeout
        self._result_ttl = result_ttl
        self._limiter = anyio.CapacityLimiter(max_threads)
        try:
            self._redis = Redis.from_url(
                redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
        except ValueError as exc:
            raise ConfigError(
                f"redis_url={safe_url(redis_url)!r} is not a Redis URL ({exc}); "
                "write e.g. redis://127.0.0.1:6379/0"
            ) from None
        self._queue = Queue(queue, connection=self._redis, serializer=self._serializer)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RQBackend:
        """Build from the `OFFLOAD_*` variables (see `fastapi_offload.backends`)."""
        source = os.environ if environ is None else environ
        settings = RemoteSettings.from_env(source)
        try:
            return cls(
                redis_url=settings.redis_url,
                queue=settings.rq_queue,
                serializer=settings.serializer,
                broker_timeout=settings.broker_timeout,
                result_ttl=settings.result_ttl,
                result_max_bytes=settings.result_max_bytes,
            )
        except ConfigError as exc:
            raise named_variable(exc, source, {"redis_url": "OFFLOAD_REDIS_URL"}) from None

    def __repr__(self) -> str:
        return (
            f"RQBackend(redis_url={safe_url(self._url)!r}, queue={self._queue.name!r}, "
            f"serializer={self._serializer!r})"
        )

    def prepare(self, call: TaskCall) -> None:
        """Raise `NotOffloadable` naming the argument that cannot travel to a worker."""
        check_call(call, backend=self.name, serializer=self._serializer)

    async def submit(self, call: TaskCall) -> None:
        """Return once Redis holds the job; raise `BackendUnavailable` otherwise."""
        await anyio.to_thread.run_sync(self._submit, call, limiter=self._limiter)

    async def status(self, task_id: str) -> TaskInfo | None:
        """The job's state, or `None` if RQ has no job with exactly this id.

        An id fastapi-offload did not make is unknown (`None`), whatever RQ holds:
        RQ would refuse some (`a.b`) and read `<id>:<anything>` as `<id>`. A record
        RQ cannot read is unknown too (logged at WARNING). Raises
        `BackendUnavailable` when Redis cannot be reached, and nothing else.
        """
        return await by_task_id(task_id, self._status, None, self._limiter)

    async def cancel(self, task_id: str) -> bool:
        """Cancel the job: one not started yet (queued, or waiting for a retry) leaves its
        queue and never starts; the worker running a started one kills its work horse.
        Its status becomes `cancelled`, with `error` "cancelled by request" (at once for
        a job not started yet, within moments for a running one).

        Returns `False` for an id RQ has no job for (or not an id fastapi-offload makes)
        and for a job that already ended. A started job whose worker died is not stopped
        by anyone (RQ's command goes to that worker). Raises `BackendUnavailable` when
        Redis cannot be reached.
        """
        return await by_task_id(task_id, self._cancel, False, self._limiter)

    async def workers(self) -> int | None:
        """How many live workers listen on this backend's queue; `None` when it cannot tell
        (Redis cannot be reached, or did not answer in time). Never raises.

        RQ's own registry (`Worker.all(queue=...)`): a worker that was killed still counts
        until its registration expires (RQ's worker TTL, 420 s by default).
        """
        # A few Redis round trips, each bounded by `broker_timeout`.
        return await count_within(self._count_workers, 4 * self._timeout, self._limiter)

    async def start(self) -> None:
        """Ping Redis once, so a wrong URL is logged at startup (not raised); then log a
        WARNING if no worker listens on the queue."""
        if not await anyio.to_thread.run_sync(self._ping, limiter=self._limiter):
            return  # already said; whether workers run cannot be told either
        queue = self._queue.name
        report_workers(
            logger,
            await self.workers(),
            backend=self.name,
            queue=queue,
            url=self._url,
            command=f"rq worker --with-scheduler --url {safe_url(self._url)} "
            f"--worker-class <worker module>.Worker {queue} (a class built with "
            "rq_worker_class)",
        )

    async def stop(self) -> None:
        """Close the Redis connections."""
        await anyio.to_thread.run_sync(self._redis.close, limiter=self._limiter)

    # -- blocking parts, always run in a worker thread -----------------------------

    def _submit(self, call: TaskCall) -> None:
        # A method of its own: benchmarks/enqueue_cost.py times it without the thread hop.
        try:
            enqueue(self._queue, call, self._result_ttl)
        except _CONNECTION_ERRORS as exc:
            raise backend_unavailable(
                self.name, self._url, exc, f"{call.name} (id {call.id}) was not submitted"
            ) from exc

    def _status(self, task_id: str) -> TaskInfo | None:
        serializer = self._queue.serializer
        try:
            return read_job(self._redis, serializer, task_id, self.name, self._result_max_bytes)
        except _CONNECTION_ERRORS as exc:
            raise backend_unavailable(
                self.name, self._url, exc, f"task {task_id}: its status is not known"
            ) from exc

    def _cancel(self, task_id: str) -> bool:
        serializer = self._queue.serializer
        try:
            return cancel_job(self._redis, serializer, task_id, self._result_ttl)
        except _CONNECTION_ERRORS as exc:
            raise backend_unavailable(
                self.name, self._url, exc, f"task {task_id}: the task was not cancelled"
            ) from exc

    def _ping(self) -> bool:
        try:
            self._redis.ping()
        except _CONNECTION_ERRORS as exc:
            logger.warning(
                "RQ's Redis at %s is not reachable at startup (%s); tasks will be answered "
                "with 503 until it is",
                safe_url(self._url),
                exc,
            )
            return False
        return True

    def _count_workers(self) -> int | None:
        try:
            return len(Worker.all(queue=self._queue))
        except Exception as exc:  # whatever failed, the answer is "cannot tell"
            logger.debug("could not list the RQ workers of %s: %s", self._queue.name, exc)
            return None


# Tracebacks and docs show the public path of what is defined in private modules.
for _public in (job_info, rq_worker_class):
    _public.__module__ = __name__
del _public
