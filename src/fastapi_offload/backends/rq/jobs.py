"""How an RQ job record is found by its id, read as a `TaskInfo` and cancelled (web
process side), and the `job.meta` keys both sides share."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis import Redis
from redis.exceptions import ResponseError
from rq.command import send_stop_job_command
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from ..._error_text import error_text
from ..._models import TaskInfo, TaskState
from ..._remote_settings import (
    CANCELLED_BY_REQUEST,
    DEFAULT_RESULT_MAX_BYTES,
    to_number,
    to_progress,
    to_timestamp,
)
from ..._results import decode, encode

__all__ = [
    "DUE_META",
    "ERROR_META",
    "FIRST_STARTED_META",
    "NOT_KEPT_META",
    "PROGRESS_MESSAGE_META",
    "PROGRESS_META",
    "RETRIES_META",
    "RETRY_ON_META",
    "cancel_job",
    "job_info",
    "read_job",
]

logger = logging.getLogger("fastapi_offload.backends.rq")

# What fastapi-offload keeps in a job's `meta` (RQ's own fields hold the rest).
#: The retries allowed, less any the worker gave up on (a failure `retry_on` does not
#: name), so that this minus RQ's `retries_left` is always the retries made.
RETRIES_META = "offload_retries"
#: `TaskCall.retry_on`: a list of exception type paths, or None for every failure.
RETRY_ON_META = "offload_retry_on"
#: `TaskCall.due_at`: when a delayed call may start (a Unix time), or None.
DUE_META = "offload_due_at"
#: The last `report_progress()`: a float from 0 to 1, and a str or None.
PROGRESS_META = "offload_progress"
PROGRESS_MESSAGE_META = "offload_progress_message"
#: Why the return value was not stored (not JSON, or over OFFLOAD_RESULT_MAX_BYTES).
NOT_KEPT_META = "offload_result_not_kept"
#: The `repr` of the last attempt's exception (RQ itself keeps the formatted traceback).
ERROR_META = "offload_error"
#: When the first attempt started (a Unix time): RQ's `started_at` is the latest one's.
FIRST_STARTED_META = "offload_first_started_at"

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

T = TypeVar("T")

# The last line of a formatted traceback: `ValueError: bad input`, or a bare `KeyError`.
_EXCEPTION_LINE = re.compile(r"(?P<type>[A-Za-z_][\w.]*)(?:: (?P<message>.*))?")


def read_job(
    connection: Redis,
    serializer: Any,
    task_id: str,
    lane: str,
    result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
) -> TaskInfo | None:
    """The `TaskInfo` of the job stored under exactly `task_id`, else `None`.

    `None` too, logged at WARNING, for a record RQ cannot read. Redis connection
    errors propagate (the caller turns them into `BackendUnavailable`).
    """
    return _with_job(
        connection, serializer, task_id, None, lambda job: job_info(job, lane, result_max_bytes)
    )


def cancel_job(connection: Redis, serializer: Any, task_id: str, ttl: int) -> bool:
    """Cancel the job stored under exactly `task_id`; whether there was one to cancel.

    A job not started yet is cancelled (`job.cancel()`: it leaves its queue or the
    schedule, and its record expires after `ttl` seconds like a finished one's); the
    worker running a started one is told to kill its work horse. `False` for an id RQ
    has no job for and for a job that already ended. Redis connection errors propagate.
    """

    def cancel(job: Job) -> bool:
        state = _STATES.get(job.get_status(refresh=False))
        try:
            if state is TaskState.PENDING:  # scheduled (delayed) too
                job.cancel()
                job.cleanup(ttl=ttl)
            elif state is TaskState.RUNNING:
                # Through the worker's pubsub channel: it kills the horse (SIGKILL) and
                # records the job STOPPED, never retried.
                send_stop_job_command(connection, job.id, serializer=serializer)
            else:
                return False
        except InvalidJobOperation:
            # Moved on between the read and the command: ended, or cancelled meanwhile.
            return False
        return True

    return _with_job(connection, serializer, task_id, False, cancel)


def _with_job(
    connection: Redis, serializer: Any, task_id: str, missing: T, use: Callable[[Job], T]
) -> T:
    # An empty id would name the key "rq:job:" itself.
    if not task_id:
        return missing
    try:
        job = Job.fetch(task_id, connection=connection, serializer=serializer)
        # `Job.fetch` reads "<id>:<anything>" as "<id>" (RQ's execution ids): without
        # this check "<id>:junk" would answer with the real job's state.
        if job.id != task_id:
            return missing
        return use(job)
    except NoSuchJobError:
        return missing
    except _UNREADABLE as exc:
        logger.warning(
            "RQ could not look up job %r (%s: %s); it is answered as unknown",
            task_id,
            type(exc).__name__,
            exc,
        )
        return missing


def job_info(job: Job, lane: str, result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES) -> TaskInfo:
    """Map an RQ job onto `TaskInfo` (one more Redis read for a failed job's error or a
    succeeded one's result).

    `result` is the return value when it is JSON data of at most `result_max_bytes`
    (else `error` says why it is not kept); `progress` is the last report, also after
    the end. A cancelled (canceled or stopped) job's `error` is "cancelled by request".
    """
    status = job.get_status(refresh=False)
    state = _STATES.get(status, TaskState.PENDING)
    try:
        name = job.func_name or ""
    except DeserializationError:
        name = ""
    meta = job.meta if isinstance(job.meta, dict) else {}  # a foreign job's may be anything
    value, error = None, None
    if state is TaskState.FAILED:
        error = meta.get(ERROR_META) if isinstance(meta.get(ERROR_META), str) else None
        if error is None:  # the work horse died before it could say (killed, OOM)
            result = job.latest_result()
            error = _error_of(result.exc_string if result is not None else None)
        # Capped and masked on reading: any worker that can write to Redis may have
        # written this.
        error = None if error is None else error_text(error)
    elif state is TaskState.CANCELLED:
        error = CANCELLED_BY_REQUEST
    elif state is TaskState.SUCCEEDED:
        value, error = _kept(job, meta, result_max_bytes)
    due_at = to_number(meta.get(DUE_META))
    if status == JobStatus.SCHEDULED and due_at is not None and due_at > time.time():
        state = TaskState.SCHEDULED  # delayed, on RQ's schedule (not a retry's wait)
    allowed = meta.get(RETRIES_META)
    used = (allowed - (job.retries_left or 0)) if isinstance(allowed, int) else 0
    started = state is TaskState.RUNNING or state.finished
    progress, message = to_progress(meta.get(PROGRESS_META), meta.get(PROGRESS_MESSAGE_META))
    first = to_number(meta.get(FIRST_STARTED_META))  # set once an attempt failed
    return TaskInfo(
        id=job.id,
        name=name,
        state=state,
        lane=lane,
        created_at=to_timestamp(job.created_at),
        started_at=first if first is not None else to_timestamp(job.started_at),
        finished_at=to_timestamp(job.ended_at) if state.finished else None,
        attempts=used + 1 if started else used,
        error=error,
        result=value,
        progress=progress,
        progress_message=message,
        due_at=due_at,
    )


def _kept(job: Job, meta: dict[str, Any], limit: int) -> tuple[Any, str | None]:
    why = meta.get(NOT_KEPT_META)
    if isinstance(why, str):
        return None, why
    # Checked on reading too: with pickle a worker stores any value, and
    # `TaskInfo.result` promises JSON data.
    text, why = encode(job.return_value(), limit)
    return decode(text), why


def _error_of(traceback: str | None) -> str | None:
    # Only for a failure the worker did not describe: RQ's formatted traceback, whose
    # last line `module.Type: message` is turned into the documented `Type('message')`
    # form (exact for one-argument exceptions); any other last line is kept as it is.
    if not traceback:
        return None
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    if not lines:
        return None
    found = _EXCEPTION_LINE.fullmatch(lines[-1])
    if found is None:
        return lines[-1]
    name, message = found["type"].rpartition(".")[2], found["message"]
    return f"{name}({message!r})" if message is not None else f"{name}()"
