"""How an RQ job record is found by its id and read as a `TaskInfo` (web process side)."""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job, JobStatus

from .._models import TaskInfo, TaskState
from ._settings import to_timestamp

__all__ = ["RETRIES_META", "job_info", "read_job"]

logger = logging.getLogger("fastapi_offload.backends.rq")

#: Kept in the job's meta so `status` can count attempts (RQ only keeps what is left).
RETRIES_META = "offload_retries"

# What `Job.fetch` can raise besides "no such job" and connection errors: ValueError for
# an id RQ would not create (`a.b`, `ü`), and, for a record RQ did not write, a key of
# another type (WRONGTYPE) or fields it cannot parse (an unknown status, a bad date).
_UNREADABLE = (ValueError, TypeError, ResponseError, DeserializationError)

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


def read_job(connection: Redis, serializer: Any, task_id: str, lane: str) -> TaskInfo | None:
    """The `TaskInfo` of the job stored under exactly `task_id`, else `None`.

    `None` too, logged at WARNING, for a record RQ cannot read. Redis connection
    errors propagate (the caller turns them into `BackendUnavailable`).
    """
    # An empty id would name the key "rq:job:" itself.
    if not task_id:
        return None
    try:
        job = Job.fetch(task_id, connection=connection, serializer=serializer)
        # `Job.fetch` reads "<id>:<anything>" as "<id>" (RQ's execution ids): without
        # this check "<id>:junk" would answer with the real job's state.
        if job.id != task_id:
            return None
        return job_info(job, lane)
    except NoSuchJobError:
        return None
    except _UNREADABLE as exc:
        logger.warning(
            "RQ could not look up job %r (%s: %s); its status is answered as unknown",
            task_id,
            type(exc).__name__,
            exc,
        )
        return None


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
    meta = job.meta if isinstance(job.meta, dict) else {}  # a foreign job's may be anything
    allowed = meta.get(RETRIES_META)
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
