"""What the runner needs of a lane. The local lanes are `loop.LoopLane`,
`thread.ThreadLane` and `process.lane.ProcessLane`. A lane runs one attempt and raises on
failure; the runner around it owns limits, timeouts, retries and, through the ledger, the
task's state.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from .._record import TaskRecord
from .._results import Kept

__all__ = ["Lane"]


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
