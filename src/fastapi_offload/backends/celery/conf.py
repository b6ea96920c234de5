"""Web process side of the Celery backend: how its client apps are configured, what a
submitted call's message carries besides the task's own arguments, and how far ahead a
delayed call's eta may be for the broker."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from celery import Celery

from ..._errors import NotOffloadable
from ..._models import TaskCall
from .results import SUBMITTED_AT
from .worker import (
    RETRIES_HEADER,
    RETRY_BACKOFF_HEADER,
    RETRY_DELAY_HEADER,
    RETRY_ON_HEADER,
    TIMEOUT_HEADER,
)

__all__ = [
    "DEFAULT_VISIBILITY",
    "check_delay",
    "client_conf",
    "publish_retry_policy",
    "send_options",
]

# kombu's Redis (and SQS) transports redeliver a message not acknowledged within this
# many seconds (`broker_transport_options["visibility_timeout"]`), eta tasks included.
DEFAULT_VISIBILITY = 3600.0
# Brokers that redeliver an unacknowledged message after `visibility_timeout`.
_REDELIVERS = ("redis://", "rediss://", "sentinel://", "sqs://")

# The soft limit raises inside the task; the hard limit, this much later, kills the
# pool process when the task ignores the soft one (e.g. stuck in C code).
_HARD_LIMIT_GRACE = 5.0


def send_options(call: TaskCall, submitted_at: float) -> dict[str, Any]:
    """`send_task` keywords for `call`: its settings as headers, its timeout as limits, and
    when it was sent as a stamp (so that every record of the task has its `created_at`)."""
    options: dict[str, Any] = {
        "stamped_headers": [SUBMITTED_AT],
        SUBMITTED_AT: submitted_at,
        "headers": {
            RETRIES_HEADER: call.retries,
            RETRY_DELAY_HEADER: call.retry_delay,
            RETRY_BACKOFF_HEADER: call.retry_backoff,
            RETRY_ON_HEADER: None if call.retry_on is None else list(call.retry_on),
            TIMEOUT_HEADER: call.timeout,
        },
    }
    if call.timeout is not None:
        options["soft_time_limit"] = call.timeout
        options["time_limit"] = call.timeout + _HARD_LIMIT_GRACE
    if call.due_at is not None:
        # A worker receives the message at once and holds it until then (Celery's eta).
        options["eta"] = datetime.fromtimestamp(call.due_at, timezone.utc)
    return options


def check_delay(call: TaskCall, broker_url: str, publisher: Celery) -> None:
    """Raise `NotOffloadable` for a call delayed past the `visibility_timeout` of a broker
    that redelivers what no worker acknowledged within it (`publisher`'s settings say)."""
    if call.due_at is not None and broker_url.startswith(_REDELIVERS):
        options = publisher.conf.broker_transport_options or {}
        visibility = float(options.get("visibility_timeout", DEFAULT_VISIBILITY))
        if call.due_at - time.time() > visibility:
            raise NotOffloadable(
                f"{call.name} is delayed past the Celery broker's visibility_timeout "
                f"({visibility:g} s): a Redis broker gives a task that no worker "
                "acknowledged within it to another worker, and an eta task is not "
                "acknowledged until it runs, so it would run more than once. Delay it "
                "less, or raise visibility_timeout in broker_transport_options on both "
                "sides (CeleryBackend(config=...) and celery_worker_app(config=...))"
            )


def client_conf(serializer: str, timeout: float, queue: str, result_ttl: int) -> dict[str, Any]:
    """The settings both client apps share (the publisher's and the result store's)."""
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
        "result_backend_transport_options": {"retry_policy": publish_retry_policy()},
    }


def publish_retry_policy() -> dict[str, float]:
    return {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
