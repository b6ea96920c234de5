"""The thread lane: sync callables on worker threads of our own.

A task's call goes to a queue that our threads take calls from, and its outcome comes
back to the event loop in a batch: a thread that finishes a call adds it to the loop's
list of finished calls and wakes the loop only when no wakeup is pending already, so a
stream of short calls costs one wakeup per loop iteration, not one per call. A hop
through `anyio.to_thread.run_sync` per task (a future, a cancel scope, a limiter and a
wakeup each) ran a third as many no-op tasks per second, at three times the CPU per
task, and fell behind the requests adding them (`benchmarks/thread_lane_cost.py`).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

from anyio import CancelScope

from .._record import TaskRecord
from .._results import Kept, encode
from .advisor import CpuAdvisor, RunDelay, measured
from .thread_slots import Call, ThreadSlots
from .thread_workers import Workers

__all__ = ["ThreadLane"]


class ThreadLane:
    """Sync callables on threads of our own (never anyio's default pool, which serves
    sync endpoints), at most `capacity` at once."""

    name = "thread"
    timeout_note = (
        "; the thread cannot be killed: it finishes in the background, holding its slot "
        "of the thread lane until it returns"
    )
    interruptible = False

    def __init__(self, capacity: int, advisor: CpuAdvisor, result_limit: int) -> None:
        self.result_limit = result_limit
        self.capacity = capacity
        # Taken by the runner around an attempt; a timed-out attempt's slot stays taken
        # until its thread returns, so abandoned threads count against `capacity`, and
        # `capacity` threads always suffice: a call never waits for a thread.
        self.limiter = ThreadSlots(capacity)
        self._workers = Workers(capacity)
        self._finished: _Finished | None = None
        self.advisor = advisor
        self.busy = 0  # threads running a task now (loop thread only)

    @property
    def abandoned(self) -> int:
        """Threads still running a function whose task ended (timed out, or given up at
        shutdown): each holds one of the lane's `capacity` slots until it returns."""
        return self.limiter.abandoned

    @property
    def threads(self) -> int:
        """Worker threads alive now, idle ones included (at most `capacity`)."""
        return self._workers.count

    async def execute(
        self, record: TaskRecord, kwargs: dict[str, Any] | None = None
    ) -> Kept | None:
        loop = asyncio.get_running_loop()
        finished = self._finished
        if finished is None or finished.loop is not loop:
            # One per event loop (an `Offload` may be entered on several in turn); a call
            # still running reports to the loop it was started from.
            finished = self._finished = _Finished(loop)
        job = _Job(self, record, kwargs, finished, loop.create_future())
        self.busy += 1
        try:
            self._workers.submit(job)
            if kwargs is None:
                # A timeout or shutdown does not wait for a thread that cannot be
                # interrupted: the thread finishes on its own, holding its slot.
                return await job.future
            # With dependencies (`kwargs`): they exit when the attempt ends, and must
            # not be closed under a thread that still uses them, so the attempt waits
            # for it (a cancel scope's cancellation is delivered once it returns).
            with CancelScope(shield=True):
                kept = await job.future
            return kept
        except BaseException:
            self.limiter.keep_for(job.call)  # a no-op when the thread has returned
            raise
        finally:
            self.busy -= 1


class _Job:
    """One attempt's call, from the loop to a worker thread and back."""

    __slots__ = (
        "call",
        "context",
        "error",
        "finished",
        "future",
        "kwargs",
        "lane",
        "name",
        "record",
        "value",
    )

    def __init__(
        self,
        lane: ThreadLane,
        record: TaskRecord,
        kwargs: dict[str, Any] | None,
        finished: _Finished,
        future: asyncio.Future[Kept | None],
    ) -> None:
        self.lane = lane
        self.name = record.name
        self.record: TaskRecord | None = record
        self.kwargs: dict[str, Any] | None = record.kwargs if kwargs is None else kwargs
        self.finished = finished
        self.future = future
        self.call = Call()
        # Taken on the loop, in the task's own context: the call sees the task's
        # `report_progress` and `cancelled` (and the caller's other context variables);
        # a copy, because the task's own context may be entered on the loop meanwhile.
        self.context: contextvars.Context | None = contextvars.copy_context()
        self.value: Kept | None = None
        self.error: BaseException | None = None

    def run(self, delay: RunDelay) -> None:
        """In a worker thread: the call, its result encoded, its outcome posted."""
        call = self.call
        if not call.begin():
            return  # the attempt gave up before this thread got to it: nobody waits
        try:
            self.value = self._call(delay)
        except BaseException as exc:  # everything reaches the attempt, traceback and all
            self.error = exc
        finally:
            call.thread_returned()
        # What the call touched goes before the loop hears of its end: once posted, the
        # task may end and its arguments (a large upload) must be freed, while this
        # thread may wait milliseconds for the GIL before it drops its own references.
        self.record = self.kwargs = self.context = None
        self.finished.post(self)

    def _call(self, delay: RunDelay) -> Kept | None:
        # Its own frame: the record, the arguments and the return value are referenced
        # from here only, and go when it returns.
        record, lane = self.record, self.lane
        assert record is not None and self.context is not None
        limit = lane.result_limit if record.keep_result else 0

        def on_done(wall: float, cpu: float) -> None:
            # `busy` is only read here, a stale value is harmless.
            lane.advisor.observe(record.name, wall, cpu, lane.busy, record.declared)

        advisor = lane.advisor
        if record.declared or record.name in advisor.flagged:
            # Nothing for the advisor to learn (it ignores declared and flagged
            # callables): the call alone.
            value = self.context.run(record.func, *record.args, **(self.kwargs or {}))
        else:
            value = self.context.run(
                measured,
                record.func,
                record.args,
                self.kwargs or {},
                on_done,
                delay,
                advisor.MIN_CPU,
            )
        # Encoded in the worker thread: a large result never costs the loop.
        return encode(value, limit) if limit else None


class _Finished:
    """Calls finished in worker threads, handed to one event loop in batches."""

    __slots__ = ("_calls", "_lock", "_pending", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._calls: list[_Job] = []
        self._pending = False  # a `_deliver` is scheduled and has not taken the list yet

    def post(self, job: _Job) -> None:
        """In a worker thread: queue the outcome; wake the loop unless a wakeup that
        will see it is pending already."""
        with self._lock:
            self._calls.append(job)
            if self._pending:
                return
            self._pending = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # that loop is closed: nothing waits for the outcome
            pass

    def _deliver(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
            self._pending = False
        for job in calls:
            # Taken off the job: its traceback holds the frame that holds the job.
            error, job.error = job.error, None
            future = job.future
            if future.done():  # cancelled: the attempt gave up on its thread
                continue
            if error is None:
                future.set_result(job.value)
            elif isinstance(error, StopIteration):
                # A future refuses it (it would end the coroutine that awaits it).
                wrapped = RuntimeError(f"{job.name} raised StopIteration")
                wrapped.__cause__ = error
                future.set_exception(wrapped)
            else:
                future.set_exception(error)
