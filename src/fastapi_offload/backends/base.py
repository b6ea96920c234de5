"""The contract a remote backend (Celery, RQ, or one you write) implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._models import TaskCall, TaskInfo

__all__ = ["Backend", "BaseBackend"]


@runtime_checkable
class Backend(Protocol):
    """A remote task queue that `Offload` can hand calls to.

    `prepare` runs inside the request, on the event loop, and must be cheap and
    non-blocking: it checks that the call can travel (raise `NotOffloadable` naming
    the argument otherwise). `submit` runs before the response is sent: when it
    returns, the broker has the task; when the broker cannot be reached it raises
    `BackendUnavailable`, which becomes a 503. `status` returns `None` for an id the
    backend cannot vouch for. Blocking client calls must not run on the event loop
    (use `anyio.to_thread.run_sync`).
    """

    name: str

    def prepare(self, call: TaskCall) -> None: ...

    async def submit(self, call: TaskCall) -> None: ...

    async def status(self, task_id: str) -> TaskInfo | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class BaseBackend:
    """Convenience base class: no-op `prepare`, `start` and `stop` hooks, and a `cancel`
    that cannot cancel.

    `cancel` is optional for a backend (it is not part of `Backend`): `Offload.cancel`
    uses it when the backend has it. It returns `True` when the task was stopped or will
    not start, `False` for an id the backend does not know or that already ended.
    """

    name: str = "backend"

    def prepare(self, call: TaskCall) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def cancel(self, task_id: str) -> bool:
        return False
