"""The thread lane: sync callables on threads bounded by a limiter of our own."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter

from .._record import TaskRecord
from .._results import Kept, encode
from .advisor import CpuAdvisor, measured
from .thread_slots import Call, ThreadSlots

__all__ = ["ThreadLane"]


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
