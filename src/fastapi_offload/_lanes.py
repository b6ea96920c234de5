"""The local lanes that run a task's body: loop and thread (the process lane is in
`_process_lane`). A lane runs one attempt and raises on failure; the runner around it
owns limits, timeouts, retries and, through the ledger, the task's state.
"""

from __future__ import annotations

import functools
from typing import Protocol

import anyio.to_thread
from anyio import CapacityLimiter

from ._advisor import CpuAdvisor, measured
from ._monitor import LoopMonitor
from ._record import TaskRecord

__all__ = ["Lane", "LoopLane", "ThreadLane"]


class Lane(Protocol):
    """What the runner needs of a lane (read-only: class attributes satisfy it)."""

    @property
    def name(self) -> str: ...

    @property
    def limiter(self) -> CapacityLimiter | None:
        """Bounds how many of the lane's tasks run at once; `None`: no bound (the loop
        lane, where admission already bounds the coroutines)."""
        ...

    @property
    def timeout_note(self) -> str:
        """Appended to a timeout's message: what became of the work that was stopped."""
        ...

    async def execute(self, record: TaskRecord) -> None:
        """Run one attempt of `record`; raise what it raised."""
        ...


class LoopLane:
    """`async def` callables, concurrently on the event loop, each step timed."""

    name = "loop"
    limiter = None
    timeout_note = ""

    def __init__(self, monitor: LoopMonitor) -> None:
        self.monitor = monitor

    async def execute(self, record: TaskRecord) -> None:
        coro = record.func(*record.args, **record.kwargs)
        if self.monitor.threshold > 0:
            await self.monitor.timed(coro, record.name, record.id)
        else:
            await coro


class ThreadLane:
    """Sync callables on a thread limiter of our own, never anyio's default one."""

    name = "thread"
    timeout_note = "; the thread cannot be killed and finishes in the background"

    def __init__(self, capacity: int, advisor: CpuAdvisor) -> None:
        self.capacity = capacity
        self.limiter = CapacityLimiter(capacity)
        # anyio's call takes a limiter too; ours is taken first (by the runner) so that
        # timeouts count running time only, which leaves this one uncontended.
        self._inner = CapacityLimiter(capacity)
        self.advisor = advisor
        self.busy = 0  # threads running a task now (loop thread only)

    async def execute(self, record: TaskRecord) -> None:
        declared = record.declared

        def on_done(wall: float, cpu: float) -> None:
            # Runs in the worker thread; `busy` is only read, a stale value is harmless.
            self.advisor.observe(record.name, wall, cpu, self.busy, declared)

        self.busy += 1
        try:
            # abandon_on_cancel: a timeout or shutdown must not wait for a thread that
            # cannot be interrupted; the thread finishes on its own.
            await anyio.to_thread.run_sync(
                functools.partial(measured, record.func, record.args, record.kwargs, on_done),
                abandon_on_cancel=True,
                limiter=self._inner,
            )
        finally:
            self.busy -= 1
