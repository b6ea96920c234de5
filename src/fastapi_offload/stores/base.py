"""Where task statuses are kept: the `Store` protocol, and what every store returns.

The ledger (`core/ledger.py`) is the only writer: it calls `put` on every transition of a
task and `evict` for a task that was never accepted. A durable or shared store (SQLite,
Redis) is one more implementation of this protocol; the default one is `stores.memory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .._models import TaskInfo
from .._record import TaskRecord
from .keys import KeyHolder
from .peers import ProcessFigures, StoredTask

__all__ = ["Orphan", "Store", "Tick", "TickClaim"]


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
    key: str | None = None  # its idempotency key: it holds it again where it runs again


@dataclass(frozen=True, slots=True)
class Tick:
    """What a store holds of one periodic task (`Store.ticks`): the last tick claimed,
    and the task the last tick that ran started (`None`: none ran yet)."""

    name: str
    tick: float  # the last tick claimed (epoch seconds): run, or skipped as an overlap
    claimed_at: float
    task_id: str | None = None  # the task of the last tick that was run
    task_tick: float | None = None  # that tick (epoch seconds)
    state: str | None = None  # that task's state as stored; None: the store holds no row
    lane: str | None = None  # that task's lane (a backend's name for a remote task)


@dataclass(frozen=True, slots=True)
class TickClaim:
    """The answer of `Store.claim_tick`."""

    claimed: bool  # this caller took the tick; False: a tick at or after it was taken
    running: str | None = None  # taken, not run: the previous tick's task is still live


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

    def claim_key(self, key: str, holder: KeyHolder) -> KeyHolder | None:
        """Take idempotency key `key` for the new task `holder` (`None`), or return the
        task that holds it (`stores.keys` says when a key is held), atomically across every
        process sharing the store. Called in the request, on the loop or in a sync
        endpoint's thread, before the task's first `put`; within `store_timeout`, else
        raise `StoreUnavailable`."""
        ...

    def release_key(self, key: str, task_id: str) -> None:
        """Free `key` if task `task_id` holds it: that task was never accepted (its request
        failed, or its lane was full). Like `put`, it must not block."""
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

    async def claim_tick(self, name: str, tick: float, task_id: str, *, overlap: bool) -> TickClaim:
        """Take the tick at `tick` (epoch seconds) of periodic task `name` for its task
        `task_id`: atomic, and exactly once across the processes sharing the store (a
        compare-and-set of the last tick: `claimed` is False when a tick at or after
        `tick` was taken already). Unless `overlap`, a tick whose previous task is still
        live (scheduled, pending or running here, not handed to a backend) is taken
        without its task: `running` names the live one, which stays the last run. Raise
        `StoreUnavailable` when the store cannot answer in time."""
        ...

    async def ticks(self, names: Sequence[str]) -> dict[str, Tick]:
        """The last tick of each periodic task in `names` that the store holds, with
        the state of the task it last ran."""
        ...

    def __len__(self) -> int:
        """How many statuses are held (for `stats()`)."""
        ...
