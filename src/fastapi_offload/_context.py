"""Inside a running task: `report_progress()` and `cancelled()`.

Whatever runs a task (the loop and thread lanes, the process trampoline, the Celery
and RQ workers) binds a `TaskContext` for the call; the two public functions find it
in a context variable, so they work the same on every lane and backend. Reports are
cheap to make and coalesced: a context publishes at most one every `INTERVAL`
seconds (the latest wins) and `flush()` publishes the last one when the call ends.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ._public import public

__all__ = [
    "INTERVAL",
    "MESSAGE_MAX",
    "TaskContext",
    "bound",
    "cancelled",
    "enter",
    "report_progress",
]

INTERVAL = 0.2  # seconds between two published reports of one task
MESSAGE_MAX = 200  # characters of a progress message that are kept

_monotonic = time.monotonic


class TaskContext:
    """One running call's side of `report_progress` and `cancelled`; runners subclass it.

    `publish` is called with a valid report at most once per `INTERVAL` (and by
    `flush` for the last one); it runs in the task's own thread or process.
    """

    __slots__ = ("_due", "_unpublished", "fraction", "message", "task_id", "task_name")

    def __init__(self, task_id: str, task_name: str) -> None:
        self.task_id = task_id
        self.task_name = task_name
        self.fraction: float | None = None
        self.message: str | None = None
        self._due = 0.0  # first report publishes at once
        self._unpublished = False

    def report(self, fraction: float, message: str | None) -> None:
        self.fraction, self.message = fraction, message
        if not self.due():
            self._unpublished = True
            return
        self._unpublished = False
        self.publish(fraction, message)

    def due(self) -> bool:
        """Whether a report now may be published (and if so, the next one waits)."""
        now = _monotonic()
        if now < self._due:
            return False
        self._due = now + INTERVAL
        return True

    def flush(self) -> None:
        """Publish the last report if it was held back (when the call ends)."""
        if self._unpublished and self.fraction is not None:
            self._unpublished = False
            self.publish(self.fraction, self.message)

    def publish(self, fraction: float, message: str | None) -> None:
        raise NotImplementedError

    def is_cancelled(self) -> bool:
        return False


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "fastapi_offload_task", default=None
)


def enter(context: TaskContext) -> None:
    """Make `context` the current task's for the rest of this context (an asyncio task's
    own copy: the runner calls it first thing in the task)."""
    _current.set(context)


@contextmanager
def bound(context: TaskContext) -> Iterator[TaskContext]:
    """Make `context` the current task's for the duration of the block, then flush it."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
        context.flush()


@public
def report_progress(fraction: float, message: str | None = None) -> None:
    """Report how far the current task has got: `fraction` from 0.0 to 1.0, and an
    optional short `message` (kept up to 200 characters).

    Call it from inside a task on any lane or remote backend, as often as you like:
    reports are coalesced (at most five a second reach the status). The latest shows as
    `TaskInfo.progress` and `TaskInfo.progress_message`. Raises `ValueError` for a
    fraction that is not a finite number from 0.0 to 1.0, `TypeError` for a message that
    is not a string, and `RuntimeError` outside a task.
    """
    context = _current.get()
    if context is None:
        raise RuntimeError(
            f"report_progress({fraction!r}) was called outside a task: call it from inside "
            "a function run by OffloadTasks.add_task, Offload.submit or a remote worker"
        )
    kind = type(fraction)
    if (kind is not float and kind is not int) or not 0.0 <= fraction <= 1.0:
        _refuse(context, fraction)
    if message is not None:
        if type(message) is not str:
            raise TypeError(
                f"report_progress(message={message!r}) in task {context.task_name} (id "
                f"{context.task_id}): the message must be a str or None"
            )
        if len(message) > MESSAGE_MAX:
            message = message[: MESSAGE_MAX - 1] + "\u2026"
    context.report(float(fraction), message)


def _refuse(context: TaskContext, fraction: object) -> None:
    number = isinstance(fraction, int | float) and not isinstance(fraction, bool)
    if not number:
        raise ValueError(
            f"report_progress({fraction!r}) in task {context.task_name} (id "
            f"{context.task_id}): the fraction must be a number from 0.0 to 1.0, "
            "e.g. done / total"
        )
    value = float(fraction)  # type: ignore[arg-type]  # checked just above
    if 0.0 <= value <= 1.0:
        return  # a float or int subclass: accepted
    raise ValueError(
        f"report_progress({fraction!r}) in task {context.task_name} (id {context.task_id}): "
        "the fraction must be a finite number from 0.0 to 1.0, e.g. done / total"
    )


@public
def cancelled() -> bool:
    """Whether the current task was asked to stop (`Offload.cancel`).

    A thread cannot be interrupted, so a task on the thread lane that may run long
    should check this between steps and return early; the task then ends `cancelled`.
    Loop tasks are cancelled at their next `await`, and process and remote tasks are
    stopped by killing their worker, so for them this is `False` while they run.
    Outside a task it is `False`.
    """
    context = _current.get()
    return context is not None and context.is_cancelled()
