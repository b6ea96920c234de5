"""Errors raised by fastapi-offload. Every message names what is at fault and what to do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from starlette.exceptions import HTTPException

from ._public import public

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "KeyConflict",
    "NotOffloadable",
    "OffloadClosed",
    "OffloadError",
    "QueueFull",
    "StoreUnavailable",
    "TaskTimeout",
    "WorkerCrashed",
]


class Named(Protocol):
    id: str
    name: str


@public
class OffloadError(Exception):
    """Base class of every error raised by fastapi-offload."""


class _ServiceUnavailable(OffloadError, HTTPException):
    # Subclassing Starlette's HTTPException makes the error a `503` with `Retry-After`
    # through the exception handler every FastAPI app already has: raised from
    # `add_task` inside a request, the client gets a clear 503 and no handler needs
    # installing. A user's own handler for the subclass (or `OffloadError`) still wins.
    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        OffloadError.__init__(self, detail)
        HTTPException.__init__(
            self, status_code=503, detail=detail, headers={"Retry-After": str(retry_after)}
        )

    def __str__(self) -> str:
        return str(self.detail)


@public
class QueueFull(_ServiceUnavailable):
    """A lane's bound on pending work is reached; the task was not accepted.

    Raised by `add_task` inside the request, so the client receives
    `503 Service Unavailable` with a `Retry-After` header instead of a success for
    work that would be dropped.
    """


@public
class OffloadClosed(_ServiceUnavailable):
    """The `Offload` runtime is shutting down (or stopped) and accepts no new tasks."""


@public
class BackendUnavailable(_ServiceUnavailable):
    """The remote backend (broker) could not be reached; the task was not submitted.

    When it failed part-way through a request's remote tasks, `accepted` holds the ids
    of those the broker took before it failed (they will run: do not send them again)
    and `not_sent` those it did not; the message names both.
    """

    accepted: tuple[str, ...] = ()
    not_sent: tuple[str, ...] = ()

    @classmethod
    def partial(
        cls, error: BackendUnavailable, accepted: Sequence[Named], not_sent: Sequence[Named]
    ) -> BackendUnavailable:
        def names(records: Sequence[Named]) -> str:
            return ", ".join(f"{r.name} (id {r.id})" for r in records)

        exc = cls(
            f"{error}. Of this request's {len(accepted) + len(not_sent)} remote tasks, "
            f"{len(accepted)} were accepted before the failure and will run: {names(accepted)}; "
            f"not sent: {names(not_sent)}. Retry only the tasks not sent."
        )
        exc.accepted = tuple(r.id for r in accepted)
        exc.not_sent = tuple(r.id for r in not_sent)
        return exc


@public
class StoreUnavailable(_ServiceUnavailable):
    """The durable task store could not be written or read in time (disk full, locked,
    down, frozen): a task was not accepted, or a status could not be read.

    A 503 with `Retry-After`. Its message says "the task store" and names neither the
    file nor the host; `cause` holds what failed (the server's log says it too, with the
    store's path or URL, password masked).
    """

    cause: str | None = None


@public
class NotOffloadable(OffloadError, TypeError):
    """A callable or an argument cannot travel to the lane it was routed to.

    For example a lambda, a closure or an unpicklable argument sent to the process
    lane, or an argument that is not JSON-serializable sent to a remote backend.
    """


@public
class WorkerCrashed(OffloadError):
    """The worker process running the task died (killed, segfault, out of memory)."""


@public
class TaskTimeout(OffloadError, TimeoutError):
    """The task ran longer than its timeout and was stopped."""


@public
class ConfigError(OffloadError, ValueError):
    """An option given to `Offload(...)` or an `OFFLOAD_*` variable has a bad value."""


@public
class KeyConflict(ConfigError):
    """`options(key=...)` names a key that a task of another function holds: a key
    deduplicates one kind of work, so the call was refused and nothing started.

    A mistake in how the app forms its keys (a `500` if it reaches the client), unless the
    keys come from clients (an `Idempotency-Key` header): catch it then and answer `422`.
    `key`, `holder` (the function holding it), `task_id` (its task) and `name` (the
    function refused) say which.
    """

    def __init__(self, key: str, holder: str, task_id: str, name: str) -> None:
        super().__init__(
            f"key {key!r} is held by task {task_id} of {holder}, so {name} cannot use it: a "
            "key deduplicates one kind of work. Give each kind of work keys of its own, e.g. "
            f'prefixed with the job\'s name: key=f"{name.rpartition(".")[2]}:{{...}}"'
        )
        self.key, self.holder, self.task_id, self.name = key, holder, task_id, name


class RemoteError(Exception):
    """An exception raised in a worker process, carried back as text (not public)."""

    def __init__(self, error: str, traceback_text: str, type_names: tuple[str, ...] = ()) -> None:
        super().__init__(error)
        self.error = error
        self.traceback_text = traceback_text
        # The `module.qualname` of the original exception's type and bases: what
        # `retry_on` is matched against, since the exception itself did not travel.
        self.type_names = type_names

    def __repr__(self) -> str:
        return self.error
