"""What the durable stores (SQLite, Redis) share: a non-blocking `put`, one writer thread
that commits what is queued in batches, flush markers, and this process's records.

`put` (on every transition, and on every progress report) snapshots the record into a
row (`stores.rows`) and queues it; the writer takes
everything waiting, collapses one task's puts into one write, and calls the subclass's
`_commit`. A failed batch's rows stay for the next one, so a flush after the store came
back writes them.

Every call is time-bounded (`timeout`, the `store_timeout` option): a read that gets no
answer in time, or a flush whose commit does not come, raises `StoreUnavailable` (a 503).
A failure opens a breaker (`stores.breaker`), so later calls fail at once instead of each
waiting out the timeout, until a probe finds the store answering again. A read that
cannot be answered raises: it never reads as "no such task".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from .rows import Row, leased, row_of
from .texts import cause_of

__all__ = ["BatchedStore"]

logger = logging.getLogger("fastapi_offload")

MAX_BATCH = 10_000  # operations per commit: bounds one commit's size and duration
PROBE_EVERY = 1.0  # seconds between two probes of a store that failed (the Retry-After)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Release:
    """Queued for the writer: free `key` if task `task_id` holds it (`release_key`)."""

    key: str
    task_id: str


@dataclass(frozen=True, slots=True)
class _Marker:
    """Queued for the writer: answer `future` once what was queued before is committed."""

    kind: str  # flush, renew (and flush) or stop (and flush)
    future: asyncio.Future[None]


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
        # This process's records by reference, so a look-up of a task running here needs
        # no query; a finished one stays until its last state is committed.
        self._here: dict[str, TaskRecord] = {}
        self._queue: queue.SimpleQueue[Row | str | _Marker | _Release] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closing = False
        self._rows = 0
        self._limiter = anyio.CapacityLimiter(4)  # reads never wait on the app's threads
        self._cancels_returned: set[str] = set()
        # This process's figures, due to be written with the next batch (`renew`); ""
        # removes them (a clean stop: gone from every dashboard at once).
        self._figures_due: str | None = None
        self._figures_lock = threading.Lock()
        # Held by the writer while it commits: a SQLite key claim of this process (on the
        # loop or a request's thread) waits on it, woken the moment the commit ends, rather
        # than meeting the file's lock and its back-off (SQLite sleeps 1, 2, 5 ms ...).
        self._committing = threading.Lock()

    def __len__(self) -> int:
        return self._rows

    def put(self, record: TaskRecord) -> None:
        # Live rows are leased to this owner; settled ones (finished, handed off) are not.
        self._here[record.id] = record
        self._queue.put(row_of(record, self.owner, self.lease, time.time()))

    def evict(self, task_id: str) -> None:
        self._here.pop(task_id, None)
        self._queue.put(task_id)

    def claim_key(self, key: str, holder: KeyHolder) -> KeyHolder | None:
        # In the caller's thread (the loop, or a sync endpoint's): the claim must be
        # decided before `add_task` returns. Through the write breaker, as a commit is.
        writer = self._writer
        if writer is None or self._closing or not writer.is_alive():
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
        self._queue.put(_Release(key, task_id))  # written with the next batch

    async def get(self, task_id: str) -> TaskInfo | None:
        record = self._here.get(task_id)
        if record is not None:  # a task of this process: current, and no query
            return record.info()
        found = await self._call(self._fetch, task_id, doing=f"read the status of task {task_id}")
        return found[0] if found else None

    async def active(self) -> list[TaskInfo]:
        stored = await self._call(self._fetch_live, doing="read the live tasks")
        here = dict(self._here)  # a copy: `put` may run in a sync endpoint's thread
        found = {info.id: info for info in stored if info.id not in here}
        found.update((i, record.info()) for i, record in here.items() if record.live)
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
            record = self._here.get(task_id)
            # Not run here yet (claimed by a reclaim, not adopted yet): asked again at the
            # next poll. Finished here, its end not committed yet: nothing to cancel.
            if task_id not in returned and record is not None and record.live:
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
                with self._figures_lock:
                    self._figures_due = text
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
        writer = self._writer
        if writer is None or self._closing or not writer.is_alive():
            raise self._down(RECORD, "the store is not open (or is closing)", shown=True)
        if kind != "stop" and not self._writes.allow():
            raise self._refused(RECORD, self._writes)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Marker(kind, future))
        # On a timeout the future fails: the writer, when its commit ends, finds it done
        # and leaves it; what was queued is still written then. A timer, not a cancel
        # scope: every request with tasks comes here, and a scope costs several times more.
        timer = loop.call_later(self.timeout, _expire, future)
        try:
            await future
        except _Expired:
            cause = f"no commit within {self.timeout:g} s (store_timeout)"
            self._writes.failed(cause)
            raise self._down(RECORD, cause, shown=True) from None
        finally:
            timer.cancel()

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
        # What a client sees names neither the file nor the host (the log does, with the
        # breaker's line); the cause stays on the error for the dashboard and the caller.
        # `shown`: a cause of our own words (a timeout, a closed store), safe to show.
        why = f" ({cause})" if shown else ""
        error = StoreUnavailable(
            f"the task store is unavailable{why}, so the server could not {doing}. Retry "
            "in a moment; the server's log names the cause."
        )
        error.cause = cause
        return error

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
        self._closing = False
        self._writer = threading.Thread(target=self._write, name=name, daemon=True)
        self._writer.start()

    async def _stop_writer(self) -> None:
        if (writer := self._writer) is not None:
            with self._figures_lock:
                self._figures_due = ""
            with contextlib.suppress(StoreUnavailable):  # the writer logged what was lost
                await self._request("stop")
            self._closing = True  # a flush from now on fails at once instead of waiting
            self._writer = None
            await anyio.to_thread.run_sync(writer.join)
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

    # -- in the writer thread -----------------------------------------------------------

    def _write(self) -> None:
        # Rows not committed yet, by id (None: delete). One task's transitions within a
        # batch collapse into one write; a failed batch's rows stay for the next one.
        pending: dict[str, Row | None] = {}
        released: list[tuple[str, str]] = []  # keys to free, kept as rows are on a failure
        while True:
            try:  # after a failure, retry within a second even if nothing else comes
                ops = [self._queue.get(timeout=1.0 if pending or released else None)]
            except queue.Empty:
                ops = []
            # One consumer: `qsize` items are there to take without waiting.
            ops += [self._queue.get_nowait() for _ in range(min(self._queue.qsize(), MAX_BATCH))]
            markers: list[_Marker] = []
            for op in ops:
                if isinstance(op, Row):
                    pending[op.id] = op
                elif isinstance(op, str):
                    pending[op] = None
                elif isinstance(op, _Release):
                    released.append((op.key, op.task_id))
                else:
                    markers.append(op)
            kinds = {marker.kind for marker in markers}
            # A lease counts from the commit, not from the `put`: rows kept through an
            # outage must not arrive already expired (and be reclaimed from a live owner).
            until = time.time() + self.lease
            for task_id, row in pending.items():
                if row is not None and row.owner is not None:
                    pending[task_id] = leased(row, until)
            with self._figures_lock:
                figures, self._figures_due = self._figures_due, None
            try:
                due = pending or kinds or figures is not None
                with self._committing:
                    error = self._commit(pending, "renew" in kinds, figures) if due else None
            except BaseException as exc:  # a bug of ours: answer the waiters, keep the rows
                logger.exception("task store %s: the writer failed", self)
                error = self._unavailable(exc)
            if error is not None:
                with self._figures_lock:  # for the next batch, unless newer ones came
                    if self._figures_due is None:
                        self._figures_due = figures
            if error is not None:
                self._writes.failed(getattr(error, "cause", None) or str(error))
            elif pending or kinds or figures is not None:
                self._writes.succeeded()
            if error is None and released:
                # Before the waiters are answered: a flush after a failed request finds its
                # keys free. Rare (a request failed), so a call of its own, which fails no
                # waiter: their rows were committed.
                try:
                    with self._committing:
                        self._release_keys(released)
                    released = []
                except Exception as exc:
                    logger.error(
                        "task store %s: could not free %d key(s) of tasks never accepted (%s); "
                        "kept to retry", self, len(released), exc,
                    )  # fmt: skip
            if error is None:
                for task_id, row in pending.items():
                    record = self._here.get(task_id)
                    if row is not None and row.owner is None and record and not record.live:
                        self._here.pop(task_id, None)  # settled and committed
                pending = {}
            # One wake-up per event loop for the whole batch, not one per waiting request.
            waiting: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for marker in markers:
                waiting.setdefault(marker.future.get_loop(), []).append(marker.future)
            for loop, futures in waiting.items():
                with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                    loop.call_soon_threadsafe(_settle, futures, error)
            if "stop" in kinds:
                if pending:
                    logger.error("task store %s: not written, lost: task ids %s", self, [*pending])
                if released:
                    logger.error("task store %s: not freed: keys %s", self, released[:20])
                self._disconnect()
                self._fail_waiting()
                return

    def _fail_waiting(self) -> None:
        # After the last batch: a flush queued meanwhile must not wait forever.
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(op, _Marker):
                error = self._down(RECORD, "the store closed", shown=True)
                with contextlib.suppress(RuntimeError):
                    op.future.get_loop().call_soon_threadsafe(_settle, [op.future], error)


RECORD = "record the task, so it was not accepted"
KEY = "check the task's idempotency key, so it was not accepted"


class _Expired(Exception):
    """A flush's commit did not come within the store timeout."""


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(_Expired())


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if not future.done():  # not cancelled or expired meanwhile
            future.set_result(None) if error is None else future.set_exception(error)
