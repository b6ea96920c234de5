"""The local lanes that run a task's body: loop and thread (the process lane is in
`lanes.process.lane`). A lane runs one attempt and raises on failure; the runner around it
owns limits, timeouts, retries and, through the ledger, the task's state.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import anyio.to_thread
from anyio import CapacityLimiter

from .._record import TaskRecord
from .._results import Kept, encode, is_small
from .advisor import CpuAdvisor, measured
from .monitor import LoopMonitor
from .thread_slots import Call, ThreadSlots

__all__ = ["Lane", "LoopLane", "ThreadLane"]


class Lane(Protocol):
    """What the runner needs of a lane (read-only: class attributes satisfy it)."""

    @property
    def name(self) -> str: ...

    @property
    def limiter(self) -> AbstractAsyncContextManager[Any] | None:
        """Bounds how many of the lane's tasks run at once; `None`: no bound (the loop
        lane, where admission already bounds the coroutines)."""
        ...

    @property
    def timeout_note(self) -> str:
        """Appended to a timeout's message: what became of the work that was stopped."""
        ...

    @property
    def interruptible(self) -> bool:
        """Whether cancelling a running attempt stops it; `False` (threads): it can only
        be asked to stop, through `cancelled()`."""
        ...

    async def execute(
        self, record: TaskRecord, kwargs: dict[str, Any] | None = None
    ) -> Kept | None:
        """Run one attempt of `record`; raise what it raised. Return its result encoded
        (`_results.encode`) when the record keeps it, else `None`. `kwargs`, when given,
        replace the record's: its own and its resolved dependencies (loop and thread
        lanes only; a task with dependencies is refused on the others)."""
        ...


class LoopLane:
    """`async def` callables, concurrently on the event loop, each step timed."""

    name = "loop"
    limiter = None
    timeout_note = ""
    interruptible = True

    def __init__(self, monitor: LoopMonitor, result_limit: int) -> None:
        self.monitor = monitor
        self.result_limit = result_limit
        # Our own threads for large results: never anyio's default pool, which serves
        # sync endpoints.
        self._encoders = CapacityLimiter(2)

    async def execute(
        self, record: TaskRecord, kwargs: dict[str, Any] | None = None
    ) -> Kept | None:
        coro = record.func(*record.args, **(record.kwargs if kwargs is None else kwargs))
        if self.monitor.threshold > 0:
            value = await self.monitor.timed(coro, record.name, record.id)
        else:
            value = await coro
        if not record.keep_result:
            return None
        if is_small(value):  # measured: a few microseconds on the loop
            return encode(value, self.result_limit)
        # A large value (or one the quick walk cannot size) is encoded in a thread: even
        # bounded by the limit, a megabyte of JSON is tens of milliseconds.
        return await anyio.to_thread.run_sync(
            encode, value, self.result_limit, limiter=self._encoders
        )


class ThreadLane:
    """Sync callables on a thread limiter of our own, never anyio's default one."""

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
        # until its thread returns, so abandoned threads count against `capacity`.
        self.limiter = ThreadSlots(capacity)
        # anyio's call takes a limiter too; ours is taken first (by the runner) so that
        # timeouts count running time only, which leaves this one uncontended.
        self._inner = CapacityLimiter(capacity)
        self.advisor = advisor
        self.busy = 0  # threads running a task now (loop thread only)

    @property
    def abandoned(self) -> int:
        """Threads still running a function whose task ended (timed out, or given up at
        shutdown): each holds one of the lane's `capacity` slots until it returns."""
        return self.limiter.abandoned

    async def execute(
        self, record: TaskRecord, kwargs: dict[str, Any] | None = None
    ) -> Kept | None:
        declared, limit = record.declared, self.result_limit if record.keep_result else 0
        call_kwargs = record.kwargs if kwargs is None else kwargs
        thread = Call()

        def on_done(wall: float, cpu: float) -> None:
            # Runs in the worker thread; `busy` is only read, a stale value is harmless.
            self.advisor.observe(record.name, wall, cpu, self.busy, declared)

        def call() -> Kept | None:
            if not thread.begin():
                return None  # the attempt gave up before this thread got to it
            try:
                value = measured(record.func, record.args, call_kwargs, on_done)
                # Encoded in the worker thread: a large result never costs the loop.
                return encode(value, limit) if limit else None
            finally:
                thread.thread_returned()

        self.busy += 1
        try:
            # abandon_on_cancel: a timeout or shutdown must not wait for a thread that
            # cannot be interrupted; the thread finishes on its own, holding its slot.
            # Except with dependencies (`kwargs`): they exit when the attempt ends, and
            # must not be closed under a thread that still uses them, so the attempt
            # waits for it. The context (the task's `report_progress` and `cancelled`)
            # goes with the call: anyio runs it in a copy of ours.
            return await anyio.to_thread.run_sync(
                call, abandon_on_cancel=kwargs is None, limiter=self._inner
            )
        except BaseException:
            self.limiter.keep_for(thread)  # a no-op when the thread has returned
            raise
        finally:
            self.busy -= 1
