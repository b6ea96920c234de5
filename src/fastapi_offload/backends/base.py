"""The contract a remote backend (Celery, RQ, or one you write) implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, cast, runtime_checkable

from .._models import TaskCall, TaskInfo

__all__ = ["Backend", "BaseBackend"]  # Capabilities: read by the remote lane only


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
    """Convenience base class: no-op `prepare`, `start` and `stop` hooks, and what a
    backend may do besides the protocol, declared off until a subclass declares it.

    `cancels = True` (or overriding `cancel`) declares `cancel`, which `Offload.cancel`
    then uses: it returns `True` when the task was stopped or will not start, `False`
    for an id the backend does not know or that already ended. `counts_workers = True`
    (or overriding `workers`) declares `workers`: how many workers consume the queue
    (`None` when it cannot tell), shown by the dashboard. `delays = True` declares that
    `submit` holds a call whose `TaskCall.due_at` is set until that time (Celery's
    `eta`, RQ's `enqueue_at`); without it a delayed call (`options(delay=/at=)`) for this
    backend is refused in the request, rather than run at once.
    """

    name: str = "backend"
    cancels: ClassVar[bool] = False
    counts_workers: ClassVar[bool] = False
    delays: ClassVar[bool] = False

    def prepare(self, call: TaskCall) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def cancel(self, task_id: str) -> bool:
        return False

    async def workers(self) -> int | None:
        return None


@runtime_checkable
class _Cancels(Protocol):
    async def cancel(self, task_id: str) -> bool: ...


@runtime_checkable
class _CountsWorkers(Protocol):
    async def workers(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one backend can do besides the `Backend` protocol (`None`: it cannot)."""

    cancel: Callable[[str], Awaitable[bool]] | None = None
    workers: Callable[[], Awaitable[int | None]] | None = None
    delays: bool = False  # holds a call until its `due_at`


def capabilities_of(backend: Backend) -> Capabilities:
    """A backend's capabilities, read once: as a `BaseBackend` declares them, else (a
    backend that follows the protocol only) by the methods it has."""
    if isinstance(backend, BaseBackend):
        # Overriding the method declares it too: a subclass written before the flags.
        kind = type(backend)
        cancels = backend.cancels or kind.cancel is not BaseBackend.cancel
        counts = backend.counts_workers or kind.workers is not BaseBackend.workers
    else:
        cancels = isinstance(backend, _Cancels)
        counts = isinstance(backend, _CountsWorkers)
    return Capabilities(
        cancel=cast(_Cancels, backend).cancel if cancels else None,
        workers=cast(_CountsWorkers, backend).workers if counts else None,
        # Declared only: a method cannot show that `submit` reads `due_at`.
        delays=getattr(backend, "delays", False) is True,
    )
