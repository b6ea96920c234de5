"""Worker side of the RQ backend: a worker class that runs registered tasks only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from rq import Queue, Worker
from rq.job import Job

from ._payload import Serializer
from ._registry import Target, TaskRegistry, UnregisteredTask
from ._settings import RemoteSettings, check_serializer
from ._worker import portable_result

__all__ = ["rq_worker_class"]

logger = logging.getLogger("fastapi_offload.backends.rq")

# Where users import these from, and what RQ's logs have always shown.
_PUBLIC_MODULE = "fastapi_offload.backends.rq"


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
        "OffloadJob",
        (_RegisteredJob,),
        {"registry": registry, "offload_serializer": chosen, "__module__": _PUBLIC_MODULE},
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

    OffloadWorker.__module__ = _PUBLIC_MODULE
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
