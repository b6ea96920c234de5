"""How the web process puts a call on an RQ queue: the job's options, its retries as RQ's
`Retry`, and, for a delayed call, RQ's schedule instead of the queue."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from rq import Queue, Retry
from rq.job import JobStatus

from ..._models import TaskCall
from .jobs import DUE_META, RETRIES_META, RETRY_ON_META

__all__ = ["enqueue"]


def enqueue(queue: Queue, call: TaskCall, result_ttl: int) -> None:
    """Create the job of `call` on `queue`, or on its schedule when the call is delayed.
    Blocking: Redis errors propagate (`RQBackend` turns them into `BackendUnavailable`)."""
    retry = None
    if call.retries:
        # RQ counts retry intervals in whole seconds; 0 requeues at once, anything
        # else is scheduled and needs a worker started with --with-scheduler.
        intervals = [math.ceil(wait) for wait in call.retry_policy().waits()]
        retry = Retry(max=call.retries, interval=intervals)
    options: dict[str, Any] = {
        "args": list(call.args),
        "kwargs": dict(call.kwargs),
        # -1 is RQ's "no timeout"; None would mean its 180 s default.
        "timeout": math.ceil(call.timeout) if call.timeout is not None else -1,
        "result_ttl": result_ttl,
        "failure_ttl": result_ttl,
        "job_id": call.id,
        "retry": retry,
        "meta": {
            RETRIES_META: call.retries,
            RETRY_ON_META: None if call.retry_on is None else list(call.retry_on),
            DUE_META: call.due_at,
        },
    }
    # A name, not the function: the client never imports tasks.
    if call.due_at is None:
        queue.enqueue_call(call.name, **options)
    else:
        # RQ's scheduler (a worker started --with-scheduler) moves it to the queue once
        # due. RQ scores its schedule in whole seconds, rounded down: rounded up here, so
        # the job is never enqueued before its time.
        at = datetime.fromtimestamp(math.ceil(call.due_at), timezone.utc)
        job = queue.create_job(call.name, status=JobStatus.SCHEDULED, **options)
        queue.schedule_job(job, at)
