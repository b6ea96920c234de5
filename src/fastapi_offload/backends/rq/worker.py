"""Worker side of the RQ backend: a worker class that runs registered tasks only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import Job
from rq.timeouts import JobTimeoutException

from ..._context import bound
from ..._error_text import error_text, scrub_args
from ..._errors import TaskTimeout
from ..._remote_settings import RemoteSettings, check_serializer, to_timestamp
from .._payload import Serializer
from .._registry import Target, TaskRegistry, UnregisteredTask
from .._worker import RemoteContext, kept_result, retried, retry_on_from
from .connection import rq_command, worker_queues, worker_redis
from .jobs import (
    ERROR_META,
    FIRST_STARTED_META,
    NOT_KEPT_META,
    PROGRESS_MESSAGE_META,
    PROGRESS_META,
    RETRIES_META,
    RETRY_ON_META,
)

__all__ = ["rq_worker_class"]

logger = logging.getLogger("fastapi_offload.backends.rq")

# Where users import these from, and what RQ's logs have always shown.
_PUBLIC_MODULE = "fastapi_offload.backends.rq"


class _RegisteredJob(Job):
    """A job that can only run callables of its worker's registry."""

    registry: ClassVar[TaskRegistry]
    offload_serializer: ClassVar[str]
    offload_result_max_bytes: ClassVar[int]

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
        # Runs in the work horse. RQ runs an `async def` task with asyncio.run, like the
        # Celery worker here does.
        name = self.func_name or ""
        try:
            with bound(_Progress(self, name)):
                value = super()._execute()
        except Exception as exc:
            self._record_failure(name, exc)
            # RQ stores the formatted traceback (message included) itself: capped and
            # masked first.
            scrub_args(exc)
            raise
        kept, why = kept_result(name, value, self.offload_serializer, self.offload_result_max_bytes)
        if why is not None and isinstance(self.meta, dict):
            # RQ saves the job without its meta at the end ("don't clobber" it): save it now.
            self.meta[NOT_KEPT_META] = why
            self._save_meta(f"why the return value of {name} (id {self.id}) was not kept")
        return kept

    def _record_failure(self, name: str, exc: Exception) -> None:
        # Here in the horse, where the exception is: RQ keeps only a formatted traceback,
        # and a status's `error` is the exception's `repr`, as on the in-process lanes
        # (RQ's timeout reads as the `TaskTimeout` the other lanes raise). The first
        # attempt's start is kept too, since RQ's `started_at` moves with each retry.
        if not isinstance(self.meta, dict):
            return  # a foreign job's meta may be anything
        timeout = isinstance(exc, JobTimeoutException)
        error: Exception = exc
        if timeout:
            error = TaskTimeout(
                f"{name} ran longer than its timeout of {self.timeout} s and was stopped"
            )
        self.meta[ERROR_META] = error_text(error)
        started = to_timestamp(self.started_at)
        if started is not None:
            self.meta.setdefault(FIRST_STARTED_META, started)
        self._give_up_unless_retried(exc, timeout)
        self._save_meta(f"how {name} (id {self.id}) failed")

    def _give_up_unless_retried(self, exc: Exception, timeout: bool) -> None:
        # RQ retries any failure while `retries_left`; for one `retry_on` does not name,
        # the retries left are given up, here in the horse, whose job object RQ's
        # failure handling reads next. The meta keeps the count of retries made.
        if not self.retries_left:
            return
        if retried(retry_on_from(self.meta.get(RETRY_ON_META)), exc, timeout):
            return
        allowed = self.meta.get(RETRIES_META)
        if isinstance(allowed, int):
            self.meta[RETRIES_META] = allowed - self.retries_left
        self.retries_left = 0

    def _save_meta(self, what: str) -> None:
        try:
            _store_meta(self)
        except (RedisError, OSError) as exc:
            logger.warning("could not store %s (%s)", what, exc)

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


class _Progress(RemoteContext):
    __slots__ = ("_job",)

    passthrough = (JobTimeoutException,)

    def __init__(self, job: Job, name: str) -> None:
        super().__init__(job.id, name)
        self._job = job

    def write(self, fraction: float, message: str | None) -> None:
        self._job.meta[PROGRESS_META] = fraction
        self._job.meta[PROGRESS_MESSAGE_META] = message
        _store_meta(self._job)


def _store_meta(job: Job) -> None:
    job.save_meta()  # type: ignore[no-untyped-call]  # RQ 3 leaves save_meta unannotated


def rq_worker_class(*targets: Target, serializer: Serializer | None = None) -> type[Worker]:
    """An RQ worker class that runs exactly the given tasks: `rq worker --worker-class ...`.

    `targets` are task functions, or modules whose `@task` / `@cpu_bound` /
    `@io_bound` functions are registered, each under the name the web process sends
    (`module.qualname`). The worker reads jobs as JSON (whatever `--serializer`
    says) unless `serializer="pickle"` or `OFFLOAD_SERIALIZER=pickle`: with pickle,
    anyone who can write to Redis can run code on the worker, so choose it only for
    a trusted Redis. The class forks a work horse per job, like RQ's default
    `Worker`. Raises `ConfigError` for a bad target or setting.

    In the work horse, `report_progress()` stores the report in the job's `meta`; a
    failure that the call's `retry_on` does not name fails the job at once, without
    its retries; a return value that is not JSON data of at most
    `OFFLOAD_RESULT_MAX_BYTES` is stored as nothing, with the reason in the `meta`.
    `cancelled()` stays `False`: a cancelled job's work horse is killed.
    """
    registry = TaskRegistry(*targets)
    settings = RemoteSettings.from_env()
    chosen = check_serializer(serializer or settings.serializer)
    job_class = type(
        "OffloadJob",
        (_RegisteredJob,),
        {
            "registry": registry,
            "offload_serializer": chosen,
            "offload_result_max_bytes": settings.result_max_bytes,
            "__module__": _PUBLIC_MODULE,
        },
    )

    class OffloadWorker(Worker):
        def __init__(self, queues: Any, *args: Any, **kwargs: Any) -> None:
            command = rq_command()
            given = kwargs.get("connection")
            if given is None:
                given = _connection_of(queues)
            connection, said = worker_redis(given, settings.redis_url, command)
            if connection is not None:
                kwargs["connection"] = connection
            kwargs["job_class"] = job_class
            kwargs["serializer"] = chosen
            names = worker_queues(queues, command, settings.rq_queue)
            super().__init__(names, *args, **kwargs)
            # RQ's command line shows the `rq.worker` logger (`self.log`) only.
            if said is not None:
                self.log.log(*said)
            self.log.info(
                "fastapi-offload RQ worker: %s task(s) registered (%s), %s messages",
                len(registry),
                ", ".join(sorted(registry)),
                chosen,
            )

    OffloadWorker.__module__ = _PUBLIC_MODULE
    return OffloadWorker


def _connection_of(queues: Any) -> Any:
    # What RQ falls back on when no connection is given: the first queue's.
    items = [queues] if isinstance(queues, str | Queue) else list(queues)
    return next((item.connection for item in items if isinstance(item, Queue)), None)
