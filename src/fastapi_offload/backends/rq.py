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

    $ rq worker --with-scheduler --url redis://127.0.0.1:6379/0 \\
        --worker-class myapp.rq_worker.Worker default

A stock RQ worker imports whatever `module.function` a job names; this worker
looks the name up in its registration instead, refuses anything else (the job
fails with `UnregisteredTask`, logged with its traceback) and reads jobs as JSON
only. `--with-scheduler` is needed for retries with a delay (RQ schedules them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import anyio
import anyio.to_thread

try:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from rq import Queue, Retry, Worker
    from rq.exceptions import DeserializationError, NoSuchJobError
    from rq.job import Job, JobStatus
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError('the RQ backend needs RQ: pip install "fastapi-offload[rq]"') from exc

from .._errors import ConfigError
from .._models import TaskCall, TaskInfo, TaskState
from ._payload import Serializer, check_call
from ._registry import Target, TaskRegistry, UnregisteredTask
from ._settings import (
    RemoteSettings,
    backend_unavailable,
    check_serializer,
    check_timeout,
    safe_url,
    to_timestamp,
)
from ._worker import portable_result
from .base import BaseBackend

__all__ = ["RQBackend", "rq_worker_class"]

logger = logging.getLogger("fastapi_offload.backends.rq")

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# Kept in the job's meta so `status` can count attempts (RQ only keeps what is left).
_RETRIES = "offload_retries"

_STATES = {
    JobStatus.CREATED: TaskState.PENDING,
    JobStatus.QUEUED: TaskState.PENDING,
    JobStatus.DEFERRED: TaskState.PENDING,
    JobStatus.SCHEDULED: TaskState.PENDING,
    JobStatus.RATE_LIMITED: TaskState.PENDING,
    JobStatus.READY_TO_ENQUEUE: TaskState.PENDING,
    JobStatus.STARTED: TaskState.RUNNING,
    JobStatus.FINISHED: TaskState.SUCCEEDED,
    JobStatus.FAILED: TaskState.FAILED,
    JobStatus.STOPPED: TaskState.CANCELLED,
    JobStatus.CANCELED: TaskState.CANCELLED,
}


class RQBackend(BaseBackend):
    """Enqueue calls on an RQ queue; look their state up in the job's Redis record.

    Every Redis call runs in a worker thread bounded by this backend's own limiter,
    with `broker_timeout` bounding connects and replies: an unreachable Redis raises
    `BackendUnavailable`. `status` returns `None` for an id RQ has no job for (never
    enqueued, or expired after `result_ttl`).

    `queue` must be a queue the workers listen on; `max_threads` bounds the threads
    running blocking Redis calls. Raises `ConfigError` for a bad setting.
    """

    name = "rq"

    def __init__(
        self,
        *,
        redis_url: str,
        queue: str = "default",
        serializer: Serializer = "json",
        broker_timeout: float = 3.0,
        result_ttl: int = 86400,
        max_threads: int = 8,
    ) -> None:
        self._serializer = check_serializer(serializer)
        timeout = check_timeout(broker_timeout, "broker_timeout")
        if not queue:
            raise ConfigError("queue='' is not a queue name; leave it unset for 'default'")
        self._url = redis_url
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
        settings = RemoteSettings.from_env(environ)
        return cls(
            redis_url=settings.redis_url,
            queue=settings.rq_queue,
            serializer=settings.serializer,
            broker_timeout=settings.broker_timeout,
            result_ttl=settings.result_ttl,
        )

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
        """The job's state, or `None` if RQ has no job with this id.

        Raises `BackendUnavailable` when Redis cannot be reached.
        """
        return await anyio.to_thread.run_sync(self._status, task_id, limiter=self._limiter)

    async def start(self) -> None:
        """Ping Redis once, so a wrong URL is logged at startup (not raised)."""
        await anyio.to_thread.run_sync(self._ping, limiter=self._limiter)

    async def stop(self) -> None:
        """Close the Redis connections."""
        await anyio.to_thread.run_sync(self._redis.close, limiter=self._limiter)

    # -- blocking parts, always run in a worker thread -----------------------------

    def _submit(self, call: TaskCall) -> None:
        retry = None
        if call.retries:
            # RQ counts retry intervals in whole seconds; 0 requeues at once, anything
            # else is scheduled and needs a worker started with --with-scheduler.
            retry = Retry(max=call.retries, interval=math.ceil(call.retry_delay))
        try:
            self._queue.enqueue_call(
                call.name,  # a name, not the function: the client never imports tasks
                args=list(call.args),
                kwargs=dict(call.kwargs),
                # -1 is RQ's "no timeout"; None would mean its 180 s default.
                timeout=math.ceil(call.timeout) if call.timeout is not None else -1,
                result_ttl=self._result_ttl,
                failure_ttl=self._result_ttl,
                job_id=call.id,
                retry=retry,
                meta={_RETRIES: call.retries},
            )
        except _CONNECTION_ERRORS as exc:
            raise backend_unavailable(
                self.name, self._url, exc, f"{call.name} (id {call.id}) was not submitted"
            ) from exc

    def _status(self, task_id: str) -> TaskInfo | None:
        try:
            job = Job.fetch(task_id, connection=self._redis, serializer=self._queue.serializer)
            return job_info(job, self.name)
        except NoSuchJobError:
            return None
        except _CONNECTION_ERRORS as exc:
            raise backend_unavailable(
                self.name, self._url, exc, f"the status of {task_id} is not known"
            ) from exc

    def _ping(self) -> None:
        try:
            self._redis.ping()
        except _CONNECTION_ERRORS as exc:
            logger.warning(
                "RQ's Redis at %s is not reachable at startup (%s); tasks will be answered "
                "with 503 until it is",
                safe_url(self._url),
                exc,
            )


def job_info(job: Job, lane: str) -> TaskInfo:
    """Map an RQ job onto `TaskInfo` (one more Redis read for a failed job's error)."""
    status = job.get_status(refresh=False)
    state = _STATES.get(status, TaskState.PENDING)
    try:
        name = job.func_name or ""
    except DeserializationError:
        name = ""
    error = None
    if state is TaskState.FAILED:
        result = job.latest_result()
        error = _last_line(result.exc_string if result is not None else None)
    allowed = job.meta.get(_RETRIES)
    used = (allowed - (job.retries_left or 0)) if isinstance(allowed, int) else 0
    started = state is TaskState.RUNNING or state.finished
    return TaskInfo(
        id=job.id,
        name=name,
        state=state,
        lane=lane,
        created_at=to_timestamp(job.created_at),
        started_at=to_timestamp(job.started_at),
        finished_at=to_timestamp(job.ended_at) if state.finished else None,
        attempts=used + 1 if started else used,
        error=error,
    )


def _last_line(traceback: str | None) -> str | None:
    # RQ keeps the formatted traceback; its last line is "ValueError: boom".
    if not traceback:
        return None
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


class _RegisteredJob(Job):
    """A job that can only run callables of its worker's registry."""

    registry: ClassVar[TaskRegistry]
    offload_serializer: ClassVar[str]

    @property
    def func(self) -> Callable[..., Any]:
        # Replaces RQ's `import_attribute(func_name)`: the name is looked up, never
        # imported, and a job calling a method on a pickled instance is refused.
        if self.instance is not None:
            raise UnregisteredTask(
                f"refused job {self.id}: it calls a method on an object; this worker runs "
                "registered functions only"
            )
        return type(self).registry.resolve(self.func_name)

    def _execute(self) -> Any:
        # RQ runs an `async def` task with asyncio.run, like the Celery worker here does.
        result = super()._execute()
        return portable_result(self.func_name or "", result, self.offload_serializer)

    # Callbacks are imported by name too; jobs from this package never set them, so a
    # job that does is not one of ours: its callbacks are dropped, with a warning.
    @property
    def success_callback(self) -> None:
        return self._no_callback("success", self._success_callback_name)

    @property
    def failure_callback(self) -> None:
        return self._no_callback("failure", self._failure_callback_name)

    @property
    def stopped_callback(self) -> None:
        return self._no_callback("stopped", self._stopped_callback_name)

    def _no_callback(self, kind: str, name: str | None) -> None:
        if name:
            logger.warning(
                "job %s: ignored its %s callback %r (not registered)",
                self.id,
                kind,
                name,
            )


def rq_worker_class(*targets: Target, serializer: Serializer | None = None) -> type[Worker]:
    """An RQ worker class that runs exactly the given tasks: `rq worker --worker-class ...`.

    `targets` are task functions, or modules whose `@task` / `@cpu_bound` /
    `@io_bound` functions are registered, each under the name the web process sends
    (`module.qualname`). The worker reads jobs as JSON (whatever `--serializer`
    says) unless `serializer="pickle"` or `OFFLOAD_SERIALIZER=pickle`: with pickle,
    anyone who can write to Redis can run code on the worker, so choose it only for
    a trusted Redis. The class forks a work horse per job, like RQ's default
    `Worker`. Raises `ConfigError` for a bad target or setting.
    """
    registry = TaskRegistry(*targets)
    chosen = check_serializer(serializer or RemoteSettings.from_env().serializer)
    job_class = type(
        "OffloadJob", (_RegisteredJob,), {"registry": registry, "offload_serializer": chosen}
    )

    class OffloadWorker(Worker):
        def __init__(self, queues: Any, *args: Any, **kwargs: Any) -> None:
            kwargs["job_class"] = job_class
            kwargs["serializer"] = chosen
            super().__init__(_queues(queues, job_class, chosen), *args, **kwargs)
            logger.info(
                "fastapi-offload RQ worker: %s task(s) registered (%s), %s messages",
                len(registry),
                ", ".join(sorted(registry)),
                chosen,
            )

    return OffloadWorker


def _queues(queues: Any, job_class: type[Job], serializer: Serializer) -> Any:
    # `rq worker` builds its queues with the command line's job class and serializer;
    # rebuild them with ours so that every job this worker touches is read as ours.
    items = [queues] if isinstance(queues, str | Queue) else list(queues)
    rebuilt: list[str | Queue] = []
    for item in items:
        if isinstance(item, Queue):
            item = Queue(
                item.name, connection=item.connection, job_class=job_class, serializer=serializer
            )
        rebuilt.append(item)
    return rebuilt
