"""Worker side of the Celery backend: an app that runs registered tasks only."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from ..._context import bound
from ..._error_text import scrub_args
from ..._errors import ConfigError, TaskTimeout
from ..._remote_settings import (
    RemoteSettings,
    celery_result_choice,
    check_serializer,
    named_variable,
    to_number,
)
from ..._retry import RetryPolicy, type_names
from .._payload import Serializer
from .._registry import Target, TaskRegistry
from .._worker import RemoteContext, kept_result, retry_on_from, run_callable
from .results import NOT_KEPT, PROGRESS, STARTED_AT, stamp
from .urls import celery_variables, check_broker_url, result_store

__all__ = [
    "RETRIES_HEADER",
    "RETRY_BACKOFF_HEADER",
    "RETRY_DELAY_HEADER",
    "RETRY_ON_HEADER",
    "TIMEOUT_HEADER",
    "celery_worker_app",
]

# Per-call settings travel as message headers, never in the task's own kwargs;
# Celery copies custom headers onto `task.request` and keeps them across retries.
RETRIES_HEADER = "offload_retries"  # int
RETRY_DELAY_HEADER = "offload_retry_delay"  # float seconds
RETRY_BACKOFF_HEADER = "offload_retry_backoff"  # bool
RETRY_ON_HEADER = "offload_retry_on"  # list of exception type paths, or null for any
TIMEOUT_HEADER = "offload_timeout"  # float seconds, or null

# Where users import `celery_worker_app` from; also what Celery's task classes name.
_PUBLIC_MODULE = "fastapi_offload.backends.celery"

logger = logging.getLogger("fastapi_offload.backends.celery")


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
    target or setting, and for a broker that keeps no results (RabbitMQ) without a
    result store (`result_backend`, `OFFLOAD_CELERY_RESULT_BACKEND`, or `none` there).

    Timeouts use Celery's soft limit (the task gets `TaskTimeout`) and, 5 s later,
    its hard limit; both need the prefork pool, Celery's default. A failure that the
    call's `retry_on` names (any, by default) is sent again by the worker, after
    `retry_delay`, or with `retry_backoff` a doubling delay with jitter; any other
    failure fails the task at once. `async def` tasks run with `asyncio.run` in the
    pool process. The app stores extended results (task name, retry count, and also
    the arguments) for `result_ttl`; pass `config={"result_extended": False}` to keep
    arguments out of the result store (the status then has no task name of its own).

    Return values are stored when they are JSON data of at most
    `OFFLOAD_RESULT_MAX_BYTES`; any other is stored as `{"offload_result_not_kept":
    "<why>"}` (logged at WARNING), and the task still succeeds. `report_progress()`
    in a task stores the state `PROGRESS` with `{"progress": 0.0-1.0, "message": ...}`;
    `cancelled()` stays `False`: a cancelled task's pool process is terminated. Each
    record from the task's start on carries `offload_started_at` (the first attempt's
    start, a Unix time) for the status's `started_at`.
    """
    settings = RemoteSettings.from_env()
    chosen = check_serializer(serializer or settings.serializer)
    registry = TaskRegistry(*targets)
    config = dict(config or {})
    try:
        broker = check_broker_url(
            config.get("broker_url") or broker_url or settings.celery_broker_url
        )
        results = result_store(broker, _given_store(result_backend, config))
    except ConfigError as exc:
        # Only what came from the environment is named by its variable.
        given = {
            "broker_url": broker_url or config.get("broker_url"),
            "result_backend": result_backend or config.get("result_backend"),
        }
        variables = {k: v for k, v in celery_variables(os.environ).items() if not given[k]}
        raise named_variable(exc, os.environ, variables) from None
    app = Celery("fastapi_offload", set_as_current=False)
    app.conf.update(
        broker_url=broker,
        result_backend=results,
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
    app.conf.update(config)
    for name, func in registry.items():
        # Not shared: a Celery task is "shared" by default, which would hand it to every
        # app built later in the process, beyond the tasks that app was given.
        body = _task_body(name, func, chosen, settings.result_max_bytes)
        app.task(name=name, bind=True, shared=False)(body)
    return app


class _Progress(RemoteContext):
    __slots__ = ("_task",)

    passthrough = (SoftTimeLimitExceeded,)

    def __init__(self, task: Any, name: str) -> None:
        super().__init__(str(task.request.id), name)
        self._task = task

    def write(self, fraction: float, message: str | None) -> None:
        # `update_state` passes the task's request, so the extended fields (name,
        # retries) stay in the record next to the progress.
        self._task.update_state(state=PROGRESS, meta={"progress": fraction, "message": message})


def _given_store(result_backend: str | None, config: Mapping[str, Any]) -> Any:
    if result_backend:
        return result_backend
    if "result_backend" in config:
        return config["result_backend"] or None
    return celery_result_choice(os.environ)


def _mark_started(task: Any) -> None:
    """Record when the task started in every record Celery writes for it from now on.

    Celery keeps no start time (its STARTED record holds the pid and host), and replaces
    the record at each state. What its extended results do copy into every record are
    the request's stamps, and a retry's message carries them on: a stamp set at the first
    attempt's start is that attempt's start time in every later record, SUCCESS and
    FAILURE included, which is what `started_at` means on the in-process lanes.
    """
    request = task.request
    if stamp(request.stamps, STARTED_AT) is not None:
        return  # a retry: the first attempt's start time travelled with the message
    request.stamps = {**(request.stamps or {}), STARTED_AT: time.time()}
    request.stamped_headers = [*(request.stamped_headers or []), STARTED_AT]
    if not task.app.conf.task_track_started:
        return
    try:
        # Celery wrote STARTED just before the task body ran, without the stamp.
        task.update_state(state="STARTED", meta={"pid": os.getpid(), "hostname": request.hostname})
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # a start time is a detail: it must not fail the task
        logger.warning("task %s: could not record its start time (%s)", request.id, exc)


def _task_body(
    name: str, func: Callable[..., Any], serializer: str, limit: int
) -> Callable[..., Any]:
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        try:
            _mark_started(self)
            with bound(_Progress(self, name)):
                value = run_callable(func, args, kwargs)
            kept, why = kept_result(name, value, serializer, limit)
            return kept if why is None else {NOT_KEPT: why}
        except SoftTimeLimitExceeded as exc:
            error: Exception = TaskTimeout(
                f"{name} ran longer than its timeout of "
                f"{getattr(request, TIMEOUT_HEADER, None)} s and was stopped"
            )
            error.__cause__ = exc
        except Exception as exc:
            error = exc
        # Celery stores the exception's message in the result backend: capped and masked.
        scrub_args(error)
        allowed = _whole(getattr(request, RETRIES_HEADER, 0))
        delay = to_number(getattr(request, RETRY_DELAY_HEADER, None))
        policy = RetryPolicy(
            allowed,
            1.0 if delay is None else delay,
            getattr(request, RETRY_BACKOFF_HEADER, False) is True,
            retry_on_from(getattr(request, RETRY_ON_HEADER, None)),
        )
        wait = policy.next_wait(request.retries + 1, type_names(error))
        if wait is not None:
            raise self.retry(exc=error, countdown=wait, max_retries=allowed)
        raise error

    run.__name__ = name.rpartition(".")[2]
    run.__qualname__ = name
    run.__module__ = _PUBLIC_MODULE
    run.__doc__ = func.__doc__
    return run


def _whole(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
