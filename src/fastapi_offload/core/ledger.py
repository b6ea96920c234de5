"""The ledger: the one owner of a task's state.

Every change of a record's state goes through a named transition here (admitted, due,
started, retrying, succeeded, failed, cancelled, handed off, released, discarded), which
also moves the lane counters, writes the store and logs what an operator must hear about.
Lanes, runners and the collector report; they never assign `record.state`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping

from .._error_text import error_text
from .._models import LaneStats, TaskState
from .._record import TaskRecord
from .._results import Kept
from ..stores.base import Store
from . import task_log
from .bounds import Counters, LaneBounds
from .observers import Observer, tell

__all__ = ["Ledger"]


class Ledger:
    """Records, counters and the store of one runtime, changed only through transitions.

    Admission may happen in a sync endpoint's worker thread, so every transition takes
    the ledger's lock; the work under it is a few counter and dict updates.
    """

    def __init__(self, store: Store, bounds: Mapping[str, LaneBounds]) -> None:
        self.store = store
        self._bounds = dict(bounds)
        self._counters = {lane: Counters() for lane in bounds}
        self._lock = threading.Lock()
        self._live: dict[str, TaskRecord] = {}
        self._joiners: list[asyncio.Future[None]] = []
        self._observers: tuple[Observer, ...] = ()
        self._abandoned: dict[str, Callable[[], int]] = {}

    def count_abandoned(self, lane: str, count: Callable[[], int]) -> None:
        """Where `lane_stats` reads the lane's abandoned threads (the thread lane's)."""
        self._abandoned[lane] = count

    def add_observer(self, observer: Observer) -> None:
        self._observers = (*self._observers, observer)

    # -- transitions ----------------------------------------------------------------

    def admit(self, record: TaskRecord) -> None:
        """Accept a new task, or raise `QueueFull` when its lane is at its bound. A
        scheduled task (not due yet) counts against no bound: `due` counts it."""
        with self._lock:
            counters = self._counters.get(record.lane)
            if counters is None:
                pass
            elif record.state is TaskState.SCHEDULED:
                counters.scheduled += 1
            else:
                full = counters.full(self._bounds[record.lane], record)
                if full is not None:
                    if self._observers:
                        tell(self._observers, "rejected", record)
                    raise full
                counters.waiting += 1
            self._live[record.id] = record
            self.store.put(record)
            if self._observers:
                tell(self._observers, "admitted", record)

    def adopt(self, record: TaskRecord) -> None:
        """Take on a task reclaimed from a process that stopped (no admission bound:
        it was accepted once already): a scheduled one stays scheduled, to run when due;
        any other is pending, to run again."""
        scheduled = record.state is TaskState.SCHEDULED
        with self._lock:
            counters = self._counters.get(record.lane)
            if counters is not None:
                if scheduled:
                    counters.scheduled += 1
                else:
                    counters.waiting += 1
            if not scheduled:
                record.state = TaskState.PENDING
            self._live[record.id] = record
            self.store.put(record)
            if self._observers:
                tell(self._observers, "admitted", record)
        task_log.adopted(record, scheduled=scheduled)

    def due(self, record: TaskRecord) -> None:
        """A scheduled task's time came: pending, counted in `waiting` (never refused:
        it was accepted, so the lane may pass `max_pending` for a while). One not
        declared `requeue=True` drops its saved call: a crash from here on leaves it
        `interrupted`, never run twice."""
        with self._lock:
            if not record.live or record.state is not TaskState.SCHEDULED:
                return  # settled meanwhile (cancelled)
            counters = self._counters.get(record.lane)
            if counters is not None:
                counters.leave(TaskState.SCHEDULED)
                counters.waiting += 1
            record.state = TaskState.PENDING
            if not record.requeue:
                record.payload = None
            self.store.put(record)
            if self._observers:
                tell(self._observers, "due", record)

    def release(self, record: TaskRecord) -> bool:
        """Shutdown with a durable store: leave a scheduled task to the store, unwritten
        (live, leased here until the lease runs out), for the process that reclaims it
        to run when due. `False` for one not scheduled (due meanwhile, or settled)."""
        with self._lock:
            if not record.live or record.state is not TaskState.SCHEDULED:
                return False
            counters = self._counters.get(record.lane)
            if counters is not None:
                counters.leave(TaskState.SCHEDULED)
            # No longer live, so no later transition writes its row: the store's row
            # (scheduled, with its saved call) is the task now, as a broker's message is
            # for a task handed off.
            record.handed_off = True
            self._settle(record)
            return True

    def refused(self, record: TaskRecord, reason: str) -> None:
        """Settle a reclaimed task that will not run here (its saved call is not one this
        app wrote) as `interrupted`; it was never admitted, so no counter moves."""
        with self._lock:
            record.state = TaskState.INTERRUPTED
            record.error = reason
            record.finished_at = time.time()
            self.store.put(record)
            if self._observers:
                tell(self._observers, "finished", record)
        task_log.refused(record, reason)

    def started(self, record: TaskRecord) -> None:
        with self._lock:
            if not record.live:
                return  # settled already (abandoned at shutdown): never brought back
            counters = self._counters[record.lane]
            counters.waiting -= 1
            counters.running += 1
            record.attempts += 1
            record.started_at = record.started_at or time.time()
            record.state = TaskState.RUNNING
            self.store.put(record)
            if self._observers:
                tell(self._observers, "started", record)

    def retrying(self, record: TaskRecord, error: BaseException, wait: float) -> None:
        with self._lock:
            if not record.live:
                return  # settled already (abandoned at shutdown): never brought back
            counters = self._counters[record.lane]
            counters.running -= 1
            counters.waiting += 1  # pending again, until its next attempt starts
            counters.retried += 1
            record.state = TaskState.PENDING
            record.error = error_text(error)
            self.store.put(record)
            if self._observers:
                tell(self._observers, "retrying", record)
        task_log.retrying(record, wait)

    def succeeded(self, record: TaskRecord, kept: Kept | None = None) -> None:
        """End a task as succeeded; `kept`: its encoded result, when it keeps one."""
        if kept is None:
            self._finish(record, TaskState.SUCCEEDED, None)
        else:
            why = None if kept[1] is None else error_text(kept[1])
            self._finish(record, TaskState.SUCCEEDED, why, kept[0])

    def progress(
        self, record: TaskRecord, fraction: float, message: str | None, publish: bool = True
    ) -> None:
        """The task's latest `report_progress`; `publish`: write it to the store now
        (the caller coalesces). From the loop or a task's worker thread."""
        record.progress, record.progress_message = fraction, message
        if publish:
            with self._lock:
                # Under the lock: a snapshot taken in a worker thread must not reach the
                # store after the task's final state.
                if record.live:
                    self.store.put(record)

    def failed(self, record: TaskRecord, error: BaseException | str) -> None:
        """End a task as failed; `error` is what it raised, or why it could not run."""
        text = error_text(error)
        if self._finish(record, TaskState.FAILED, text):
            task_log.failed(record, error, text)

    def cancelled(self, record: TaskRecord, reason: str, *, log: bool = True) -> bool:
        """End a task as cancelled (`False`: it had ended); `log=False` when the caller
        says it for many at once."""
        reason = error_text(reason)
        if not self._finish(record, TaskState.CANCELLED, reason):
            return False
        if log:
            task_log.cancelled(record, reason)
        return True

    def handed_off(self, record: TaskRecord) -> None:
        """The remote backend accepted the task; keep its record for look-ups only."""
        with self._lock:
            record.handed_off = True
            record.sending = False
            self.store.put(record)
            self._settle(record)
            if self._observers:
                tell(self._observers, "handed_off", record)

    def discarded(self, record: TaskRecord) -> None:
        """Forget a task that was never accepted: its request failed before the response."""
        with self._lock:
            if not record.live or record.id not in self._live:
                return
            counters = self._counters.get(record.lane)
            if counters is not None:
                counters.leave(record.state)
            self.store.evict(record.id)
            if record.key is not None:  # the client's retry takes the key: nothing ran
                self.store.release_key(record.key, record.id)
            self._settle(record)
            if self._observers:
                tell(self._observers, "discarded", record)

    def _finish(
        self, record: TaskRecord, state: TaskState, error: str | None, result: str | None = None
    ) -> bool:
        with self._lock:
            if not record.live:
                return False  # settled already (a race between its end and a cancel)
            counters = self._counters.get(record.lane)
            if counters is not None:
                counters.end(record.state, state)
            record.state = state
            record.error = error  # kept text already (`error_text`)
            record.result = result
            record.sending = False
            record.finished_at = time.time()
            self.store.put(record)
            self._settle(record)
            if self._observers:
                tell(self._observers, "finished", record)
            return True

    def _settle(self, record: TaskRecord) -> None:
        # Under the lock. A settle may come from another thread (a start refused after
        # its loop closed): wake the joiners on their own loops.
        self._live.pop(record.id, None)
        if not self._live and self._joiners:
            joiners, self._joiners = self._joiners, []
            for future in joiners:
                try:
                    future.get_loop().call_soon_threadsafe(_wake, future)
                except RuntimeError:  # noqa: PERF203 - that loop is closed: none waits
                    pass

    # -- queries --------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Tasks accepted here and not settled yet (scheduled, pending, running, or
        being sent)."""
        return len(self._live)

    def live(self) -> list[TaskRecord]:
        with self._lock:
            return list(self._live.values())

    def find(self, task_id: str) -> TaskRecord | None:
        return self._live.get(task_id)

    async def join(self) -> None:
        """Return once no task accepted here is scheduled, pending, running or being
        sent (a scheduled one is waited for until it is due and has ended)."""
        while self._live:
            future = asyncio.get_running_loop().create_future()
            with self._lock:
                if not self._live:
                    return
                self._joiners.append(future)
            await future

    def lane_stats(self, lane: str) -> LaneStats:
        count = self._abandoned.get(lane)
        return self._counters[lane].stats(self._bounds[lane], count() if count else 0)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
