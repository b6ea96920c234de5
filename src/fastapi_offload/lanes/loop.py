"""The loop lane: `async def` callables, concurrently on the event loop."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from anyio import CapacityLimiter

from .._record import TaskRecord
from .._results import Kept, encode, is_small
from .monitor import LoopMonitor

__all__ = ["LoopLane"]


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
