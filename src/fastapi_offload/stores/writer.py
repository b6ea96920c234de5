"""The writer thread of a durable store: one thread takes what `put`, `evict` and
`release_key` queued, in batches, and has its store commit each batch (`Committer`).

The thread takes everything waiting (up to `MAX_BATCH`), collapses one task's puts into
one write, and leases live rows from the commit. A failed batch's rows stay for the next
one, so a flush after the store came back writes them. A flush queues a marker and waits
for it (`Writer.wait`): it is answered once what was queued before it is committed, with
the batch's error if that failed, or with an error of its own when no commit comes within
the store timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.to_thread

from .rows import Row, leased
from .texts import RECORD, cause_of, unavailable

if TYPE_CHECKING:
    from .._errors import StoreUnavailable
    from .breaker import Breaker

__all__ = ["MAX_BATCH", "Committer", "Release", "Writer"]

logger = logging.getLogger("fastapi_offload")

MAX_BATCH = 10_000  # operations per commit: bounds one commit's size and duration


@dataclass(frozen=True, slots=True)
class Release:
    """Queued for the writer: free `key` if task `task_id` holds it (`release_key`)."""

    key: str
    task_id: str


@dataclass(frozen=True, slots=True)
class _Marker:
    """Queued for the writer: answer `future` once what was queued before is committed."""

    kind: str  # flush, renew (and flush) or stop (and flush)
    future: asyncio.Future[None]


class Committer(Protocol):
    """What the writer thread asks of its store, in that thread. Its `repr` names the
    store in the writer's log lines."""

    @property
    def lease(self) -> float:
        """Seconds a live row's lease runs, counted from its commit."""
        ...

    def commit(
        self, pending: dict[str, Row | None], renew: bool, figures: str | None
    ) -> StoreUnavailable | None:
        """Write a batch (`Backing._commit`); the error if it failed."""
        ...

    def release_keys(self, released: list[tuple[str, str]]) -> None:
        """Free these (key, task id) claims (`Backing._release_keys`); raise if it cannot."""
        ...

    def committed(self, pending: dict[str, Row | None]) -> None:
        """`pending` is written: what it settled need not be kept in memory any more."""
        ...

    def disconnect(self) -> None:
        """After the last batch (`Backing._disconnect`)."""
        ...


class Writer:
    """One store's queue and writer thread (see the module's docstring). The queue lives
    as long as the store; the thread runs from `start` to `join`."""

    def __init__(self, store: Committer, writes: Breaker) -> None:
        self._store, self._writes = store, writes  # `writes`: the store's write breaker
        self._queue: queue.SimpleQueue[Row | str | _Marker | Release] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = False
        # This process's figures, due to be written with the next batch (`renew`); ""
        # removes them (a clean stop: gone from every dashboard at once).
        self._figures_due: str | None = None
        self._figures_lock = threading.Lock()
        # Held by the writer while it commits: a SQLite key claim of this process (on the
        # loop or a request's thread) waits on it, woken the moment the commit ends, rather
        # than meeting the file's lock and its back-off (SQLite sleeps 1, 2, 5 ms ...).
        self.committing = threading.Lock()

    @property
    def started(self) -> bool:
        """Started and not joined yet (it may have stopped meanwhile)."""
        return self._thread is not None

    @property
    def open(self) -> bool:
        """Running and not closing: a flush now gets its answer from a commit."""
        thread = self._thread
        return thread is not None and not self._closing and thread.is_alive()

    def put(self, op: Row | str | Release) -> None:
        """Queue a row to write, a task id to delete, or a key to free."""
        self._queue.put(op)

    def publish(self, figures: str) -> None:
        """Write `figures` (this process's, as JSON text; "": remove them) with the next
        batch, in place of any not written yet."""
        with self._figures_lock:
            self._figures_due = figures

    def start(self, name: str) -> None:
        self._closing = False
        self._thread = threading.Thread(target=self._write, name=name, daemon=True)
        self._thread.start()

    async def wait(self, kind: str, within: float) -> None:
        """Queue a marker of `kind` and return once the writer answered it; raise the
        batch's error, or `StoreUnavailable` after `within` seconds (the store timeout)
        without a commit."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Marker(kind, future))
        # On a timeout the future fails: the writer, when its commit ends, finds it done
        # and leaves it; what was queued is still written then. A timer, not a cancel
        # scope: every request with tasks comes here, and a scope costs several times more.
        timer = loop.call_later(within, _expire, future)
        try:
            await future
        except _Expired:
            cause = f"no commit within {within:g} s (store_timeout)"
            self._writes.failed(cause)
            raise unavailable(RECORD, cause, shown=True) from None
        finally:
            timer.cancel()

    async def join(self) -> None:
        """After the stop marker: a flush from now on fails at once; wait for the thread."""
        if (thread := self._thread) is not None:
            self._closing = True
            self._thread = None
            await anyio.to_thread.run_sync(thread.join)

    # -- in the writer thread -----------------------------------------------------------

    def _write(self) -> None:
        # Rows not committed yet, by id (None: delete). One task's transitions within a
        # batch collapse into one write; a failed batch's rows stay for the next one.
        pending: dict[str, Row | None] = {}
        released: list[tuple[str, str]] = []  # keys to free, kept as rows are on a failure
        store = self._store
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
                elif isinstance(op, Release):
                    released.append((op.key, op.task_id))
                else:
                    markers.append(op)
            kinds = {marker.kind for marker in markers}
            # A lease counts from the commit, not from the `put`: rows kept through an
            # outage must not arrive already expired (and be reclaimed from a live owner).
            until = time.time() + store.lease
            for task_id, row in pending.items():
                if row is not None and row.owner is not None:
                    pending[task_id] = leased(row, until)
            with self._figures_lock:
                figures, self._figures_due = self._figures_due, None
            try:
                due = pending or kinds or figures is not None
                with self.committing:
                    error = store.commit(pending, "renew" in kinds, figures) if due else None
            except BaseException as exc:  # a bug of ours: answer the waiters, keep the rows
                logger.exception("task store %s: the writer failed", store)
                error = unavailable(RECORD, cause_of(exc))
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
                    with self.committing:
                        store.release_keys(released)
                    released = []
                except Exception as exc:
                    logger.error(
                        "task store %s: could not free %d key(s) of tasks never accepted (%s); "
                        "kept to retry", store, len(released), exc,
                    )  # fmt: skip
            if error is None:
                store.committed(pending)
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
                    logger.error("task store %s: not written, lost: task ids %s", store, [*pending])
                if released:
                    logger.error("task store %s: not freed: keys %s", store, released[:20])
                store.disconnect()
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
                error = unavailable(RECORD, "the store closed", shown=True)
                with contextlib.suppress(RuntimeError):
                    op.future.get_loop().call_soon_threadsafe(_settle, [op.future], error)


class _Expired(Exception):
    """A flush's commit did not come within the store timeout."""


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(_Expired())


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if not future.done():  # not cancelled or expired meanwhile
            future.set_result(None) if error is None else future.set_exception(error)
