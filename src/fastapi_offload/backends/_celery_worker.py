"""Worker side of the Celery backend: an app that runs registered tasks only."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from .._errors import TaskTimeout
from ._payload import Serializer
from ._registry import Target, TaskRegistry
from ._settings import RemoteSettings, check_serializer, to_number
from ._worker import portable_result, run_callable

__all__ = ["RETRIES_HEADER", "RETRY_DELAY_HEADER", "TIMEOUT_HEADER", "celery_worker_app"]

# Per-call settings travel as message headers, never in the task's own kwargs;
# Celery copies custom headers onto `task.request` and keeps them across retries.
RETRIES_HEADER = "offload_retries"
RETRY_DELAY_HEADER = "offload_retry_delay"
TIMEOUT_HEADER = "offload_timeout"

# Where users import `celery_worker_app` from; also what Celery's task classes name.
_PUBLIC_MODULE = "fastapi_offload.backends.celery"


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
        # Not shared: a Celery task is "shared" by default, which would hand it to every
        # app built later in the process, beyond the tasks that app was given.
        app.task(name=name, bind=True, shared=False)(_task_body(name, func, chosen))
    return app


def _task_body(name: str, func: Callable[..., Any], serializer: str) -> Callable[..., Any]:
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        try:
            return portable_result(name, run_callable(func, args, kwargs), serializer)
        except SoftTimeLimitExceeded as exc:
            error: Exception = TaskTimeout(
                f"{name} ran longer than its timeout of "
                f"{getattr(request, TIMEOUT_HEADER, None)} s and was stopped"
            )
            error.__cause__ = exc
        except Exception as exc:
            error = exc
        allowed = _whole(getattr(request, RETRIES_HEADER, 0))
        if request.retries < allowed:
            delay = to_number(getattr(request, RETRY_DELAY_HEADER, None))
            raise self.retry(
                exc=error, countdown=1.0 if delay is None else delay, max_retries=allowed
            )
        raise error

    run.__name__ = name.rpartition(".")[2]
    run.__qualname__ = name
    run.__module__ = _PUBLIC_MODULE
    run.__doc__ = func.__doc__
    return run


def _whole(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
