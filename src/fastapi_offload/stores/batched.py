"""What the durable stores (SQLite, Redis) share: a non-blocking `put`, one writer thread
that commits what is queued in batches (`stores.writer`), and this process's records.

`put` (on every transition, and on every progress report) snapshots the record into a
row (`stores.rows`) and queues it for the writer, which has the subclass's `_commit`
write each batch. A flush returns once what was queued before it is committed.

Every call is time-bounded (`timeout`, the `store_timeout` option): a read that gets no
answer in time, or a flush whose commit does not come, raises `StoreUnavailable` (a 503).
A failure opens a breaker (`stores.breaker`), so later calls fail at once instead of each
waiting out the timeout, until a probe finds the store answering again. A read that
cannot be answered raises: it never reads as "no such task".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
import anyio.to_thread

from .._errors import StoreUnavailable
from .._models import TaskInfo
from .._record import TaskRecord
from .backing import Backing
from .base import Orphan, Tick, TickClaim
from .breaker import Breaker
from .keys import KeyHolder
from .lease_owner import owner_id_of_this_process
from .peers import FIGURES_MAX, ProcessFigures, StoredTask
from .rows import Row, row_info, row_of
from .texts import RECORD, cause_of, unavailable
from .writer import Release, Writer

__all__ = ["BatchedStore"]

logger = logging.getLogger("fastapi_offload")

PROBE_EVERY = 1.0  # seconds between two probes of a store that failed (the Retry-After)
T = TypeVar("T")


class BatchedStore(Backing):
    """The write path of a durable store; subclasses commit a batch and read."""

    durable = True
    owner: str
    lease: float
    key_ttl: float = 24 * 3600.0  # seconds a key stays held past its task's end
    #: What a subclass's calls raise when the store cannot answer (down, locked, I/O).
    failures: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, *, timeout: float = 1.0, probe_every: float = PROBE_EVERY) -> None:
        """Call last in a subclass's `__init__`: the breakers are named by `repr(self)`."""
        self.timeout = timeout
        # Reads and writes fail apart (a full disk still reads): one breaker each.
        self._reads = Breaker(f"task store {self!r} (reads)", cooldown=probe_every)
        self._writes = Breaker(f"task store {self!r} (writes)", cooldown=probe_every)
        # The last row `put` of each of this process's tasks (a snapshot; the ledger holds
        # the records), so a look-up of a task running here needs no query; a finished one
        # stays until that row is committed.
        self._here: dict[str, Row] = {}
        self._writer = Writer(_Committer(self), self._writes)
        self._rows = 0
        self._limiter = anyio.CapacityLimiter(4)  # reads never wait on the app's threads
        self._cancels_returned: set[str] = set()

    def __len__(self) -> int:
        return self._rows

    def put(self, record: TaskRecord) -> None:
        # Live rows are leased to this owner; settled ones (finished, handed off) are not.
        row = self._here[record.id] = row_of(record, self.owner, self.lease, time.time())
        self._writer.put(row)

    def evict(self, task_id: str) -> None:
        self._here.pop(task_id, None)
        self._writer.put(task_id)

    def claim_key(self, key: str, holder: KeyHolder) -> KeyHolder | None:
        # In the caller's thread (the loop, or a sync endpoint's): the claim must be
        # decided before `add_task` returns. Through the write breaker, as a commit is.
        if not self._writer.open:
            raise self._down(KEY, "the store is not open (or is closing)", shown=True)
        if not self._writes.allow():
            raise self._refused(KEY, self._writes)
        try:
            found = self._claim_key(key, holder)
        except self.failures as exc:
            self._writes.failed(cause := cause_of(exc))
            raise self._down(KEY, cause) from exc
        self._writes.succeeded()
        return found

    def release_key(self, key: str, task_id: str) -> None:
        self._writer.put(Release(key, task_id))  # written with the next batch

    async def get(self, task_id: str) -> TaskInfo | None:
        row = self._here.get(task_id)
        if row is not None:  # a task of this process: its last put, and no query
            return row_info(row)
        found = await self._call(self._fetch, task_id, doing=f"read the status of task {task_id}")
        return found[0] if found else None

    async def active(self) -> list[TaskInfo]:
        stored = await self._call(self._fetch_live, doing="read the live tasks")
        here = dict(self._here)  # a copy: `put` may run in a sync endpoint's thread
        found = {info.id: info for info in stored if info.id not in here}
        found.update((i, row_info(row)) for i, row in here.items() if row.owner is not None)
        return list(found.values())

    async def request_cancel(self, task_id: str) -> bool:
        doing = f"ask for task {task_id} to be cancelled"
        return await self._call(self._request_cancel, task_id, doing=doing, writes=True)

    async def cancel_requests(self) -> list[str]:
        # A request stays on the task's row until the task settles, so that it follows the
        # task to a new owner if this process dies after reading it: what was returned is
        # remembered instead (only while still requested, so the set stays small).
        requested = await self._call(self._cancels, doing="read the cancel requests")
        returned, fresh = self._cancels_returned, []
        for task_id in requested:
            row = self._here.get(task_id)
            # Not run here yet (claimed by a reclaim, not adopted yet): asked again at the
            # next poll. Finished here, its end not committed yet: nothing to cancel.
            if task_id not in returned and row is not None and row.owner is not None:
                fresh.append(task_id)
        self._cancels_returned = returned.intersection(requested).union(fresh)
        return fresh

    async def flush(self) -> None:
        """Return once everything `put` before is committed; `StoreUnavailable` if not."""
        await self._request("flush")

    async def renew(self, figures: ProcessFigures | None = None) -> None:
        if figures is not None:
            text = figures.encode()
            if len(text) <= FIGURES_MAX:  # what every reader would refuse is not written
                self._writer.publish(text)
        await self._request("renew")

    async def processes(self) -> list[ProcessFigures]:
        return await self._call(self._processes, doing="read the figures of the processes")

    async def recent(self, limit: int) -> list[StoredTask]:
        return await self._call(self._recent, limit, doing="read the recent tasks")

    async def reclaim(self) -> list[Orphan]:
        # Upkeep, not a request: it may prune thousands of rows, so it gets a third of the
        # lease (its period) rather than the request timeout, and is not abandoned early.
        doing = "reclaim the tasks of stopped processes"
        deadline = max(self.timeout, self.lease / 3)
        return await self._call(self._reclaim, doing=doing, writes=True, deadline=deadline)

    async def claim_tick(self, name: str, tick: float, task_id: str, *, overlap: bool) -> TickClaim:
        claim, doing = self._claim_tick, f"claim a tick of periodic task {name}"
        return await self._call(claim, name, tick, task_id, overlap, doing=doing, writes=True)

    async def ticks(self, names: Sequence[str]) -> dict[str, Tick]:
        if not names:
            return {}
        found = await self._call(self._ticks, list(names), doing="read the periodic tasks' runs")
        return {tick.name: tick for tick in found}

    async def _request(self, kind: str) -> None:
        if not self._writer.open:
            raise self._down(RECORD, "the store is not open (or is closing)", shown=True)
        if kind != "stop" and not self._writes.allow():
            raise self._refused(RECORD, self._writes)
        await self._writer.wait(kind, self.timeout)

    async def _call(
        self,
        func: Callable[..., T],
        *args: object,
        doing: str,
        writes: bool = False,
        deadline: float | None = None,
    ) -> T:
        """`func(*args)` in a reader thread, within `deadline` (default: `timeout`),
        through the read breaker (the write breaker for a write: a cancel request, a
        reclaim)."""
        deadline = self.timeout if deadline is None else deadline
        breaker = self._writes if writes else self._reads
        if breaker.blocked():
            raise self._refused(doing, breaker)

        def guarded() -> T:
            # Checked again in the thread: calls that queued for a reader thread while
            # the store hung fail at once once the breaker opened.
            if not breaker.allow():
                raise self._refused(doing, breaker)
            try:
                return func(*args)
            except self.failures as exc:
                self._failed_in_thread(exc)
                breaker.failed(cause := cause_of(exc))
                raise self._down(doing, cause) from exc

        try:
            # Abandoned on a timeout: the thread ends within the client's own timeout
            # (socket or busy timeout), but nobody waits for it.
            with anyio.fail_after(deadline):
                found = await anyio.to_thread.run_sync(
                    guarded, limiter=self._limiter, abandon_on_cancel=True
                )
        except TimeoutError:
            cause = f"no answer within {deadline:g} s"
            breaker.failed(cause)
            raise self._down(doing, cause, shown=True) from None
        breaker.succeeded()
        return found

    def _down(self, doing: str, cause: str, *, shown: bool = False) -> StoreUnavailable:
        return unavailable(doing, cause, shown=shown)

    def _refused(self, doing: str, breaker: Breaker) -> StoreUnavailable:
        return self._down(doing, breaker.error or "the store failed a moment ago")

    def _take_owner_id(self) -> None:
        """Call first in `open`: an owner id formed in the process this one forked from
        is replaced by one of this process's own."""
        owner = owner_id_of_this_process(self.owner)
        if owner != self.owner:
            self.owner = owner
            self._reads.name = f"task store {self!r} (reads)"
            self._writes.name = f"task store {self!r} (writes)"

    def _start_writer(self, name: str) -> None:
        self._writer.start(name)

    async def _stop_writer(self) -> None:
        if self._writer.started:
            self._writer.publish("")
            with contextlib.suppress(StoreUnavailable):  # the writer logged what was lost
                await self._request("stop")
            await self._writer.join()
            # Written (or logged as lost): the rows are the truth now. A row left live (a
            # scheduled task kept for later) is then this owner's to reclaim, should the
            # store open again in this process (`STRAYS`).
            self._here.clear()

    def _decoded(self, what: str, decode: Callable[[], T]) -> T | None:
        """`decode()`, or None with a warning when what it reads is not what this package
        writes (a row from another version, or written by someone else)."""
        try:
            return decode()
        except (TypeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            logger.warning("task store %s: cannot read %s: %s", self, what, exc)
            return None

    def _unavailable(self, exc: object) -> StoreUnavailable:
        """A failed commit, as the error a flush raises (the detail was logged)."""
        return self._down(RECORD, cause_of(exc) if isinstance(exc, BaseException) else str(exc))


class _Committer:
    """The writer thread's view of its store (`writer.Committer`): the storage calls of
    `Backing`, and this process's records."""

    def __init__(self, store: BatchedStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return repr(self._store)

    @property
    def lease(self) -> float:
        return self._store.lease

    def commit(
        self, pending: dict[str, Row | None], renew: bool, figures: str | None
    ) -> StoreUnavailable | None:
        return self._store._commit(pending, renew, figures)

    def release_keys(self, released: list[tuple[str, str]]) -> None:
        self._store._release_keys(released)

    def committed(self, pending: dict[str, Row | None]) -> None:
        here = self._store._here
        for task_id, row in pending.items():
            last = here.get(task_id)  # the last row put: settled rows are the last ones
            if row is not None and row.owner is None and last and last.owner is None:
                here.pop(task_id, None)  # settled and committed

    def disconnect(self) -> None:
        self._store._disconnect()


KEY = "check the task's idempotency key, so it was not accepted"
