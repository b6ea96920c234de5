"""Worker side: how a registered callable is run, what is kept of its return value, which
failures are retried, and how its progress reports leave the worker."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from .._context import TaskContext
from .._errors import TaskTimeout
from .._results import encode
from .._retry import matches, type_names

__all__ = ["TIMEOUT_NAMES", "RemoteContext", "kept_result", "retried", "retry_on_from"]

logger = logging.getLogger("fastapi_offload.worker")

#: What a queue's own timeout error also matches in `retry_on`: `TaskTimeout`, as on the
#: in-process lanes, so `retry_on=(TaskTimeout,)` means the same on every lane.
TIMEOUT_NAMES = type_names(TaskTimeout("timeout"))


def run_callable(func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Call `func`; an `async def` task runs to completion in a fresh event loop.

    Neither Celery's nor RQ's worker runs an event loop of its own, and a task must
    not share one with anything else, so each async call gets its own `asyncio.run`
    (the same choice RQ makes in `Job._execute`).
    """
    result = func(*args, **dict(kwargs))
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def kept_result(name: str, value: Any, serializer: str, limit: int) -> tuple[Any, str | None]:
    """What the result store is given of `value`, and why it is given nothing (or None).

    With JSON messages a value must be JSON data of at most `limit` bytes, the test the
    in-process lanes apply (`fastapi_offload._results.encode`, same wording). One that
    is not is stored as nothing, with a warning: a value that does not serialize must
    not turn a task that ran successfully into a failure. With pickle the store takes
    any value; `status` applies the same test when it reads one.
    """
    if value is None or serializer != "json":
        return value, None
    _, why = encode(value, limit)
    if why is None:
        return value, None
    logger.warning("task %s ran successfully; %s", name, why)
    return None, why


def retry_on_from(value: object) -> tuple[str, ...] | None:
    """`retry_on` as it travelled (a list of type paths, or null for every failure)."""
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    # Absent (a message from an older client) or malformed: the default policy.
    return None


def retried(retry_on: tuple[str, ...] | None, exc: BaseException, timeout: bool = False) -> bool:
    """Whether `exc` is a failure `retry_on` retries; `timeout`: it is the queue's own
    timeout error, which also answers to `TaskTimeout`."""
    names = type_names(exc) + (TIMEOUT_NAMES if timeout else ())
    return matches(retry_on, names)


class RemoteContext(TaskContext):
    """A remote task's side of `report_progress`: `write` puts a report in the task's
    record in the broker.

    A report that cannot be written is dropped: progress is a hint, and the task must
    neither fail nor stop for it. The first failure of a task is logged at WARNING,
    later ones at DEBUG. `passthrough` are the queue's timeout errors, which arrive
    asynchronously (a signal) and may land inside a write: they must reach the task.
    """

    __slots__ = ("_warned",)

    passthrough: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, task_id: str, task_name: str) -> None:
        super().__init__(task_id, task_name)
        self._warned = False

    def publish(self, fraction: float, message: str | None) -> None:
        try:
            self.write(fraction, message)
        except self.passthrough:
            raise
        except Exception as exc:
            logger.log(
                logging.DEBUG if self._warned else logging.WARNING,
                "task %s (id %s): a progress report could not be written to the broker "
                "(%s: %s) and was dropped; the task goes on",
                self.task_name,
                self.task_id,
                type(exc).__name__,
                exc,
            )
            self._warned = True

    def write(self, fraction: float, message: str | None) -> None:
        raise NotImplementedError
