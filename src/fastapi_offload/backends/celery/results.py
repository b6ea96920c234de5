"""What the web process writes to Celery's result store, and how a record reads back."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from celery.backends.base import BaseKeyValueStoreBackend
from kombu.exceptions import SerializationError, SerializerNotInstalled

from ..._error_text import error_text
from ..._models import TaskCall, TaskInfo, TaskState
from ..._remote_settings import (
    CANCELLED_BY_REQUEST,
    DEFAULT_RESULT_MAX_BYTES,
    to_number,
    to_progress,
    to_timestamp,
)
from ..._results import decode, encode

__all__ = [
    "NOT_KEPT",
    "PROGRESS",
    "STARTED_AT",
    "SUBMITTED",
    "SUBMITTED_AT",
    "UNREADABLE",
    "cancellable",
    "stamp",
    "task_info",
    "write_marker",
    "write_revoked",
]

SUBMITTED = "SENT"
"""State written to the result store before a task is published. Celery reports an id
it has no record of as PENDING, so "queued" and "never submitted" look alike; with
this marker, PENDING from the store means "not submitted through this backend"."""

#: State a running task stores with each `report_progress()`; its result is
#: `{"progress": 0.0-1.0, "message": str | None}`.
PROGRESS = "PROGRESS"

#: Stamps (Celery's message stamping): the web process sets the first when it sends a
#: task, the worker the second when the task starts (Unix times). Celery's extended
#: results copy a task's stamps into each record it writes, and a retry's message carries
#: them on, so both survive the SENT marker, retries and the end of the task.
SUBMITTED_AT = "offload_submitted_at"
STARTED_AT = "offload_started_at"

#: The key of what a worker stores instead of a return value it does not keep (not JSON,
#: or over `OFFLOAD_RESULT_MAX_BYTES`): `{NOT_KEPT: "result not kept: <why>"}`.
NOT_KEPT = "offload_result_not_kept"

# `cancel` revokes a task in any state but these (it has ended); custom states, set by
# a running task, count as running. Of the others, these are before the task started.
_ENDED = frozenset({"SUCCESS", "FAILURE", "REVOKED", "REJECTED", "IGNORED"})
_NOT_STARTED = frozenset({SUBMITTED, "RECEIVED", "RETRY"})

# What decoding a record this package's clients and workers did not write can raise:
# a payload that is not JSON (DecodeError) or is in a refused format (ContentDisallowed),
# JSON that is not an object or has no status (TypeError, KeyError), a key of another
# type (WRONGTYPE). Catch these before the store's connection errors: kombu counts
# KeyError as one of those, which would turn a bad record into a 503.
UNREADABLE: tuple[type[Exception], ...] = (
    SerializationError,
    SerializerNotInstalled,
    KeyError,
    TypeError,
    ValueError,
)
try:
    from redis.exceptions import ResponseError
except ImportError:  # pragma: no cover - Celery without Redis (another result store)
    pass
else:
    UNREADABLE += (ResponseError,)

_STATES = {
    SUBMITTED: TaskState.PENDING,
    "PENDING": TaskState.PENDING,
    "RECEIVED": TaskState.PENDING,
    "RETRY": TaskState.PENDING,
    "STARTED": TaskState.RUNNING,
    PROGRESS: TaskState.RUNNING,
    "SUCCESS": TaskState.SUCCEEDED,
    "FAILURE": TaskState.FAILED,
    "REJECTED": TaskState.FAILED,
    "REVOKED": TaskState.CANCELLED,
    "IGNORED": TaskState.SUCCEEDED,
}


def write_marker(store: Any, call: TaskCall, submitted_at: float) -> None:
    """Record `call` as submitted (`SENT`, with its name and time) in the result store."""
    marker: dict[str, Any] = {"name": call.name, "submitted_at": submitted_at}
    if call.due_at is not None:
        marker["due_at"] = call.due_at  # its status reads `scheduled` until then
    if isinstance(store, BaseKeyValueStoreBackend):
        # One round trip instead of `store_result`'s two: its read-before-write
        # guards against overwriting a SUCCESS, which a fresh id cannot have.
        meta: dict[str, Any] = {
            "status": SUBMITTED,
            "result": marker,
            "traceback": None,
            "children": [],
            "date_done": None,
            "task_id": call.id,
        }
        store.set(store.get_key_for_task(call.id), store.encode(meta))
    else:
        store.store_result(call.id, marker, SUBMITTED)


def cancellable(meta: Mapping[str, Any] | None) -> bool:
    """Whether a record is of a task submitted here that has not ended (so `cancel` revokes
    it). No record (PENDING) is an id never submitted, or expired."""
    status = None if meta is None else str(meta.get("status", "PENDING"))
    return status not in (None, "PENDING") and status not in _ENDED


def write_revoked(store: Any, task_id: str, meta: Mapping[str, Any]) -> None:
    """Record a task that has not started as REVOKED (`cancelled by request`) at once.

    Workers learn of a revoke by broadcast and mark a queued task REVOKED only when its
    message reaches them, which for a busy worker may be much later; until then status
    would still say pending. A task that has started is left to the worker: it stores
    REVOKED when it terminates the task. The record keeps the name and retry count (the
    results app stores extended results); `store_result` never overwrites a SUCCESS.
    """
    if str(meta.get("status")) not in _NOT_STARTED:
        return
    result = meta.get("result")
    marker = result if isinstance(result, Mapping) else {}
    request = SimpleNamespace(
        task=meta.get("name") or marker.get("name"), retries=meta.get("retries"), chord=None
    )
    store.mark_as_revoked(task_id, CANCELLED_BY_REQUEST, request=request)


def task_info(
    task_id: str,
    meta: Mapping[str, Any],
    lane: str,
    *,
    result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
) -> TaskInfo | None:
    """Map a Celery result-store record onto `TaskInfo`; `None` when there is none.

    A SUCCESS record's value is the `result` when it is JSON data of at most
    `result_max_bytes` (else `error` says why it is not kept); a PROGRESS record's
    `{"progress", "message"}` are the progress fields. A REVOKED task is cancelled.
    """
    status = str(meta.get("status", "PENDING"))
    if status == "PENDING":
        # No record at all: Celery cannot tell "queued" from "never existed", and a
        # task submitted through this backend always has at least the SENT marker.
        return None
    result = meta.get("result")
    marker = result if status == SUBMITTED and isinstance(result, Mapping) else {}
    name = meta.get("name") or marker.get("name") or ""
    retries = meta.get("retries")
    state = _STATES.get(status, TaskState.RUNNING)  # custom states: set by a running task
    due_at = to_number(marker.get("due_at"))
    if state is TaskState.PENDING and due_at is not None and due_at > time.time():
        state = TaskState.SCHEDULED  # sent with an eta: a worker holds it until then
    attempts = 0
    if status not in (SUBMITTED, "RECEIVED"):
        attempts = (retries if isinstance(retries, int) else 0) + 1
    value, error = None, None
    if status in ("FAILURE", "RETRY", "REJECTED"):
        # Capped and masked on reading: any worker that can write the result backend
        # may have written this.
        error = error_text(result if isinstance(result, BaseException) else str(result))
    elif status == "REVOKED":
        error = CANCELLED_BY_REQUEST
    elif status == "SUCCESS":
        value, error = _kept(result, result_max_bytes)
    progress, message = None, None
    if status == PROGRESS and isinstance(result, Mapping):
        progress, message = to_progress(result.get("progress"), result.get("message"))
    return TaskInfo(
        id=task_id,
        name=str(name),
        state=state,
        lane=lane,
        created_at=to_number(marker.get("submitted_at")) or stamp(meta, SUBMITTED_AT),
        # A RETRY record keeps the first attempt's start: it did start.
        started_at=stamp(meta, STARTED_AT) if status not in (SUBMITTED, "RECEIVED") else None,
        finished_at=to_timestamp(meta.get("date_done")) if state.finished else None,
        attempts=attempts,
        error=error,
        result=value,
        progress=progress,
        progress_message=message,
        due_at=due_at,
    )


def stamp(stamps: object, key: str) -> float | None:
    """The time stamped as `key` in a record or a request's stamps, else None."""
    value = stamps.get(key) if isinstance(stamps, Mapping) else None
    if isinstance(value, list | tuple) and len(value) == 1:
        value = value[0]  # Celery may carry a stamp on as a one-item list
    return to_number(value)


def _kept(result: Any, limit: int) -> tuple[Any, str | None]:
    if isinstance(result, Mapping) and len(result) == 1:
        why = result.get(NOT_KEPT)
        if isinstance(why, str):
            return None, why
    # Checked on reading too: with pickle messages a worker stores any value, and
    # `TaskInfo.result` promises JSON data (a tuple reads back as a list, as it would
    # from a JSON store).
    text, why = encode(result, limit)
    return decode(text), why
