"""`options(after=...)`: a task that starts only once the tasks it follows succeeded.

`BackgroundTasks` ran a request's tasks one after another; `OffloadTasks` runs them
concurrently. Where order matters, `tasks.options(after=first).add_task(second)` says
so: `second` waits (pending, holding no lane slot) until `first` ends; it runs if
`first` succeeded and ends `cancelled`, naming `first` and its end, otherwise.

The tasks it waits for are found through the ledger (a task of this process: woken by
the ledger's `finished` event) or the store (a task of another process sharing a
durable store, polled). The ids are kept in a `requeue=True` task's saved call, so a
task run again after a crash still waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import anyio

from .._models import TaskState
from .._record import TaskRecord
from .ledger import Ledger

__all__ = ["Ordering"]

POLL = 0.25  # seconds between two looks at a task of another process


class Ordering:
    """Waits for the end of the tasks a task follows (one per runtime)."""

    def __init__(self, ledger: Ledger, is_local: Callable[[str], bool]) -> None:
        self._ledger = ledger
        self._is_local = is_local  # the runtime's answer: a task of another lane was sent
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        # Observing from the first wait only: an app that never uses `after=` pays
        # nothing on each transition of each task.
        self._observing = False

    def observe(self, event: str, record: TaskRecord) -> None:
        # Under the ledger's lock, maybe in a sync endpoint's thread: wake on the loop.
        if event in ("finished", "discarded", "handed_off"):
            for future in self._waiters.pop(record.id, ()):
                with contextlib.suppress(RuntimeError):  # its loop is closed
                    future.get_loop().call_soon_threadsafe(_wake, future)

    async def blocked(self, record: TaskRecord) -> str | None:
        """Wait for `record.after`; `None` if all succeeded, else why it will not run."""
        for task_id in record.after:
            state = await self._end_of(task_id)
            if state is not TaskState.SUCCEEDED:
                return f"not run: it runs after task {task_id}, which " + (
                    "is unknown" if state is TaskState.UNKNOWN else f"ended {state.value}"
                )
        return None

    async def _end_of(self, task_id: str) -> TaskState:
        ledger = self._ledger
        while True:
            record = ledger.find(task_id)
            if record is not None and record.live:
                if not self._observing:
                    self._observing = True
                    ledger.add_observer(self)
                future = asyncio.get_running_loop().create_future()
                self._waiters.setdefault(task_id, []).append(future)
                if record.live:  # not settled between the look and the registration
                    await future
                continue
            if record is not None and record.handed_off:
                return TaskState.UNKNOWN  # a remote backend's: refused in `add_task`
            info = await ledger.store.get(task_id)
            if info is None:
                return TaskState.UNKNOWN
            if info.state.finished:
                return info.state
            if not self._is_local(info.lane):
                return TaskState.UNKNOWN  # a remote backend's task: its end is not ours
            await anyio.sleep(POLL)  # live in another process sharing the store


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
