"""Errors raised by fastapi-offload. Every message names what is at fault and what to do."""

from __future__ import annotations

from starlette.exceptions import HTTPException

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "NotOffloadable",
    "OffloadClosed",
    "OffloadError",
    "QueueFull",
    "TaskTimeout",
    "WorkerCrashed",
]


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


class QueueFull(_ServiceUnavailable):
    """A lane's bound on pending work is reached; the task was not accepted.

    Raised by `add_task` inside the request, so the client receives
    `503 Service Unavailable` with a `Retry-After` header instead of a success for
    work that would be dropped.
    """


class OffloadClosed(_ServiceUnavailable):
    """The `Offload` runtime is shutting down (or stopped) and accepts no new tasks."""


class BackendUnavailable(_ServiceUnavailable):
    """The remote backend (broker) could not be reached; the task was not submitted."""


class NotOffloadable(OffloadError, TypeError):
    """A callable or an argument cannot travel to the lane it was routed to.

    For example a lambda, a closure or an unpicklable argument sent to the process
    lane, or an argument that is not JSON-serializable sent to a remote backend.
    """


class WorkerCrashed(OffloadError):
    """The worker process running the task died (killed, segfault, out of memory)."""


class TaskTimeout(OffloadError, TimeoutError):
    """The task ran longer than its timeout and was stopped."""


class ConfigError(OffloadError, ValueError):
    """An option given to `Offload(...)` or an `OFFLOAD_*` variable has a bad value."""
