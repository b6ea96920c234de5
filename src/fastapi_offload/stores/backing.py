"""What a durable store implements for `stores.batched.BatchedStore`: the calls its
writer thread and reader threads make, each against one kind of storage (SQLite, Redis).
`BatchedStore` and its writer (`stores.writer`) own the queue, the threads, the breakers
and the time bounds; a subclass only talks to its storage through these methods."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._errors import StoreUnavailable
    from .._models import TaskInfo
    from .base import Orphan, Tick, TickClaim
    from .keys import KeyHolder
    from .peers import ProcessFigures, StoredTask
    from .rows import Row

__all__ = ["Backing"]


class Backing:
    """The storage calls of a durable store (see the module's docstring)."""

    def _commit(
        self, pending: dict[str, Row | None], renew: bool, figures: str | None
    ) -> StoreUnavailable | None:
        """Write `pending` (None: delete), renew this owner's leases if asked, and publish
        `figures` (this process's, as JSON text; "": remove them) unless None; on a
        failure return the error, clearing `pending` if its rows can never be written."""
        raise NotImplementedError

    def _processes(self) -> list[ProcessFigures]:
        """The figures of the live processes (decoded, bad ones skipped), in a thread."""
        raise NotImplementedError

    def _recent(self, limit: int) -> list[StoredTask]:
        """See `Store.recent`, in a thread."""
        raise NotImplementedError

    def _claim_key(self, key: str, holder: KeyHolder) -> KeyHolder | None:
        """See `Store.claim_key`, in the caller's thread, bounded by the client's own
        timeout (SQLite's busy timeout, Redis's socket timeout): `timeout`."""
        raise NotImplementedError

    def _release_keys(self, released: list[tuple[str, str]]) -> None:
        """Delete these (key, task id) claims, each only if that task still holds the key,
        in the writer thread; raise one of `failures` when the store cannot."""
        raise NotImplementedError

    def _fetch(self, task_id: str) -> list[TaskInfo]:
        """The stored status of `task_id` (empty if none, or unreadable), in a thread."""
        raise NotImplementedError

    def _fetch_live(self) -> list[TaskInfo]:
        """Every stored live task, in a thread."""
        raise NotImplementedError

    def _request_cancel(self, task_id: str) -> bool:
        """Mark the live row `task_id` as asked to cancel (False: no live row), in a thread."""
        raise NotImplementedError

    def _cancels(self) -> list[str]:
        """The ids of this owner's live rows marked as asked to cancel, in a thread."""
        raise NotImplementedError

    def _reclaim(self) -> list[Orphan]:
        """Settle the rows of owners whose lease ran out (see `Store.reclaim`), in a thread."""
        raise NotImplementedError

    def _claim_tick(self, name: str, tick: float, task_id: str, overlap: bool) -> TickClaim:
        """See `Store.claim_tick`, in a thread: one transaction (SQLite), one script (Redis)."""
        raise NotImplementedError

    def _ticks(self, names: list[str]) -> list[Tick]:
        """See `Store.ticks`, in a thread; a stored tick that cannot be read is skipped."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Close the writer's connection (in the writer thread, after its last batch)."""

    def _failed_in_thread(self, exc: BaseException) -> None:
        """A call in a reader thread failed with `exc` (one of `failures`): drop what
        must not be reused (a connection that met a broken file)."""
