"""What an operator hears about a task's transitions: the ledger's log lines, one
function each, so that the ledger reads as the transitions alone."""

from __future__ import annotations

import logging
import time

from .._error_text import LIMIT, TRACEBACK_LIMIT, error_text, traceback_text
from .._errors import RemoteError, TaskTimeout, WorkerCrashed
from .._record import TaskRecord

__all__ = ["adopted", "cancelled", "failed", "refused", "retrying"]

logger = logging.getLogger("fastapi_offload")


def adopted(record: TaskRecord, *, scheduled: bool) -> None:
    if scheduled:
        logger.info(
            "task %s (id %s), scheduled for %s UTC, is taken over from a process that "
            "stopped: it runs here when due",
            record.name,
            record.id,
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.due_at)),
        )
        return
    logger.warning(
        "task %s (id %s) is run again: the process that ran it stopped before it "
        "finished (declared requeue=True)",
        record.name,
        record.id,
    )


def refused(record: TaskRecord, reason: str) -> None:
    logger.warning(
        "task %r (id %r) reclaimed from a process that stopped is interrupted, %s",
        record.name,
        record.id[:200],
        reason,
    )


def retrying(record: TaskRecord, wait: float) -> None:
    logger.warning(
        "task %s (id %s) failed (attempt %d of %d), retrying in %.3g s: %s",
        record.name,
        record.id,
        record.attempts,
        record.retries + 1,
        wait,
        record.error,
    )


def failed(record: TaskRecord, error: BaseException | str, text: str) -> None:
    """`error`: what the task raised, or why it could not run; `text`: its kept text."""
    if isinstance(error, str):
        logger.error("task %s (id %s, %s lane): %s", record.name, record.id, record.lane, text)
        return
    message = "task %s (id %s, %s lane) failed after %d attempt(s): %s"
    values = (record.name, record.id, record.lane, record.attempts, text)
    if isinstance(error, RemoteError):
        carried = error_text(error.traceback_text, TRACEBACK_LIMIT)
        logger.error(message + "\n%s", *values, carried)
    elif isinstance(error, TaskTimeout | WorkerCrashed):
        logger.error(message, *values)
    elif len(text) <= LIMIT and text == _plain_repr(error):
        logger.error(message, *values, exc_info=error)
    else:
        # Capped or masked: the handler would print the whole message (and the
        # password) again from `exc_info`, so the traceback goes as text, sanitised.
        logger.error(message + "\n%s", *values, traceback_text(error))


def cancelled(record: TaskRecord, reason: str) -> None:
    logger.warning("task %s (id %s, %s lane): %s", record.name, record.id, record.lane, reason)


def _plain_repr(error: BaseException) -> str | None:
    try:
        return repr(error)
    except Exception:
        return None
