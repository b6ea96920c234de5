"""What the web process writes to Celery's result store, and how a record reads back."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from celery.backends.base import BaseKeyValueStoreBackend
from kombu.exceptions import SerializationError, SerializerNotInstalled

from .._models import TaskCall, TaskInfo, TaskState
from ._settings import to_number, to_timestamp

__all__ = ["SUBMITTED", "UNREADABLE", "task_info", "write_marker"]

#: State written to the result store before a task is published. Celery reports an id
#: it has no record of as PENDING, so "queued" and "never submitted" look alike; with
#: this marker, PENDING from the store means "not submitted through this backend".
SUBMITTED = "SENT"

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
    "SUCCESS": TaskState.SUCCEEDED,
    "FAILURE": TaskState.FAILED,
    "REJECTED": TaskState.FAILED,
    "REVOKED": TaskState.CANCELLED,
    "IGNORED": TaskState.SUCCEEDED,
}


def write_marker(store: Any, call: TaskCall) -> None:
    """Record `call` as submitted (`SENT`, with its name and time) in the result store."""
    marker = {"name": call.name, "submitted_at": time.time()}
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


def task_info(task_id: str, meta: Mapping[str, Any], lane: str) -> TaskInfo | None:
    """Map a Celery result-store record onto `TaskInfo`; `None` when there is none."""
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
    attempts = 0
    if status not in (SUBMITTED, "RECEIVED"):
        attempts = (retries if isinstance(retries, int) else 0) + 1
    error = None
    if status in ("FAILURE", "RETRY", "REJECTED"):
        error = repr(result) if isinstance(result, BaseException) else str(result)
    return TaskInfo(
        id=task_id,
        name=str(name),
        state=state,
        lane=lane,
        created_at=to_number(marker.get("submitted_at")),
        finished_at=to_timestamp(meta.get("date_done")) if state.finished else None,
        attempts=attempts,
        error=error,
    )
