"""Why a local task is cancelled: the reasons the runner records, and telling a
cancellation of ours (shutdown, cancel by id, the server's) from a `CancelledError` the
task raised itself, which is a failure like any other."""

from __future__ import annotations

import asyncio

from .._record import TaskRecord

__all__ = ["ABANDONED", "BY_REQUEST", "BY_SERVER", "SHUTDOWN", "cancel_requested"]

SHUTDOWN = (
    "cancelled at shutdown: still unfinished when shutdown_timeout ran out; raise "
    "OFFLOAD_SHUTDOWN_TIMEOUT to wait longer"
)
ABANDONED = (
    "cancelled at shutdown: it ignored its cancellation and was abandoned (a result it "
    "produces later is not recorded)"
)
BY_SERVER = "cancelled by the server (its request was cancelled, e.g. at shutdown)"
BY_REQUEST = "cancelled by request"


def cancel_requested(record: TaskRecord, exc: BaseException) -> bool:
    # A `CancelledError` the task raised itself is a failure. Ours (shutdown, cancel by
    # id) set `cancel_reason` first; the server's (its request cancelled) and anyio's
    # (an enclosing cancel scope) show as a cancel request on the current task. anyio
    # withdraws the request of a timeout scope it caught, so a timeout is a failure.
    if record.cancel_reason is not None:
        return True
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    if cancelling is None:  # Python 3.10: cannot tell; a CancelledError counts as one
        return isinstance(exc, asyncio.CancelledError)
    return bool(cancelling())
