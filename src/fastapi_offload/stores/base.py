"""Where task statuses are kept: the `Store` protocol, and what every store returns.

The ledger (`core/ledger.py`) is the only writer: it calls `put` on every transition of a
task and `evict` for a task that was never accepted. A durable or shared store (SQLite,
Redis) is one more implementation of this protocol; the default one is `stores.memory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .._models import TaskInfo
from .._record import TaskRecord
from .peers import ProcessFigures, StoredTask

__all__ = ["Orphan", "Store"]


@dataclass(frozen=True, slots=True)
class Orphan:
    """A task a durable store found unfinished under an owner whose lease ran out (or,
    on one host, whose process is gone: `stores.lease_owner`).

    `reclaim` has already settled it in the store: a requeue-able one (with `payload`)
    as pending under the new owner, to be run again; a scheduled one (with `payload`,
    requeue-able or not) as scheduled under the new owner, to be run when due; any other
    as `interrupted`. `requeued`: it is to be run here (it has a saved call).
    """

    info: TaskInfo
    requeued: bool
    payload: bytes | None = None  # the saved call (`_saved_call`), when `requeued`
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 1.0


class Store(Protocol):
    #: Whether tasks survive the process: the collector then awaits `flush` before the
    #: response (write-ahead), and the runtime renews leases and reclaims orphans.
    durable: bool

    def put(self, record: TaskRecord) -> None:
        """Keep what `record` says now. Called on the event loop (or a sync endpoint's
        thread, at admission) for every transition: it must not block."""
        ...

    def evict(self, task_id: str) -> None:
        """Forget a task that was never accepted (its request failed)."""
        ...

    async def flush(self) -> None:
        """Return once everything `put` so far is committed; raise `StoreUnavailable`
        (a 503 in the request) when it cannot be."""
        ...

    async def get(self, task_id: str) -> TaskInfo | None:
        """The task's last known status, or `None` for an id the store does not hold."""
        ...

    async def active(self) -> list[TaskInfo]:
        """Every task held that is neither finished nor handed to a remote backend."""
        ...

    async def open(self) -> None:
        """Connect (raise `ConfigError` naming `store` when it cannot be used)."""
        ...

    async def close(self) -> None:
        """Flush what is left and disconnect."""
        ...

    async def renew(self, figures: ProcessFigures | None = None) -> None:
        """Extend the lease of this owner's live tasks (a heartbeat), and publish
        `figures` (this process's lanes) in the same write, for `processes`."""
        ...

    async def processes(self) -> list[ProcessFigures]:
        """The figures of every live process sharing the store (this one's included),
        as published with their last renewal; empty for a store of one process."""
        ...

    async def recent(self, limit: int) -> list[StoredTask]:
        """Up to `limit` of the newest settled tasks and up to `limit` live ones, of every
        process sharing the store, each naming the process that ran it (the dashboard's
        rows); empty for a store of one process (the dashboard has its own)."""
        ...

    async def reclaim(self) -> list[Orphan]:
        """Settle, exactly once across processes, the live tasks whose owner's lease
        expired, and return them."""
        ...

    async def request_cancel(self, task_id: str) -> bool:
        """Ask the process that owns live task `task_id` to cancel it (a shared store);
        `False` when the store holds no live task by that id (unknown, finished, or
        handed to a remote backend). Raise `StoreUnavailable` when it cannot tell."""
        ...

    async def cancel_requests(self) -> list[str]:
        """Ids of this owner's live tasks that `request_cancel` asked about since the
        last call (each returned once; polled about twice a second while tasks run)."""
        ...

    def __len__(self) -> int:
        """How many statuses are held (for `stats()`)."""
        ...
