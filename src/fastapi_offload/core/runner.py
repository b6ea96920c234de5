"""The runner: the one way a local task starts, the attempt loop, and shutdown.

A task starts as a plain asyncio task on the runtime's loop (a task group's
`start_soon` costs ~5x more, on every task, and anyio's primitives work the same
inside it), is tracked by id until it ends (the home of cancel-by-id), and reports
every step to the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import anyio

from .._context import enter
from .._errors import OffloadError, RemoteError, StoreUnavailable, TaskTimeout
from .._models import TaskState
from .._record import TaskRecord
from .._results import Kept
from .._retry import type_names
from ..lanes.base import Lane
from ..lanes.remote import RemoteLane
from .cancelling import ABANDONED, BY_SERVER, SHUTDOWN, cancel_requested
from .ledger import Ledger
from .record_context import RecordContext
from .schedule import until_due

if TYPE_CHECKING:
    from .after import Ordering
    from .tracing import TaskTracer

__all__ = ["Runner"]

logger = logging.getLogger("fastapi_offload")

_NO_SPAN = contextlib.nullcontext()


class Runner:
    """Starts, tracks and stops the local tasks of one runtime on one event loop."""

    def __init__(
        self,
        ledger: Ledger,
        lanes: Mapping[str, Lane],
        remote: RemoteLane | None = None,
    ) -> None:
        self._ledger = ledger
        self._lanes = lanes
        self._remote = remote  # sends a remote task that was added after the response
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._closed = False
        self.tracer: TaskTracer | None = None  # a span per task, with tracing=True
        self.ordering: Ordering | None = None  # waits for the tasks of `after=`

    def open(self) -> None:
        """Bind to the running event loop; tasks start on it from now on."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise OffloadError(
                "fastapi-offload runs on asyncio (uvicorn, hypercorn's asyncio worker, "
                "uvloop); this event loop is not asyncio (trio?), which is not supported"
            ) from None
        self._thread = threading.get_ident()
        self._closed = False

    @property
    def is_open(self) -> bool:
        return self._loop is not None and not self._closed

    # -- starting -------------------------------------------------------------------

    def start(self, record: TaskRecord) -> None:
        """Start an accepted task. Safe from any thread; never raises: a task that
        cannot start is failed (logged by name and id) through the ledger."""
        loop = self._loop
        if loop is None:
            self._ledger.failed(record, "could not start: its runtime was never started")
        elif threading.get_ident() == self._thread:
            self._start_here(record)
        else:
            try:  # a sync endpoint or a sync dependency's teardown, in a worker thread
                loop.call_soon_threadsafe(self._start_here, record)
            except RuntimeError:
                self._ledger.failed(record, "could not start: its event loop is closed")

    def _start_here(self, record: TaskRecord) -> None:
        assert self._loop is not None
        if self._closed:  # a start from another thread that lost the race with shutdown
            self._ledger.failed(record, "could not start: the runtime had shut down")
            return
        task = self._loop.create_task(self._run(record), name=f"offload:{record.name}")
        record.task = task
        task.add_done_callback(functools.partial(self._ended, record))

    def _ended(self, record: TaskRecord, task: asyncio.Task[None]) -> None:
        record.task = None  # a finished record may be kept (statuses): not its task
        if record.live and not record.sending:
            # Cancelled before its first step: `_run` never ran, so settle it here.
            self._ledger.cancelled(record, record.cancel_reason or BY_SERVER)
        elif not task.cancelled() and task.exception() is not None:
            # `_run` handles every failure of the task itself; this is a bug of ours.
            logger.error("internal error in %s", task.get_name(), exc_info=task.exception())

    async def wait(self, records: Iterable[TaskRecord]) -> None:
        """Wait for these tasks to end (the default runtime: the request waits for its
        tasks). Cancelled meanwhile, it cancels them and waits for them to settle."""
        tasks = [task for r in records if (task := r.task) is not None and not task.done()]
        if not tasks:
            return
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            for record in records:
                self.cancel(record.id, BY_SERVER)
            await asyncio.wait(tasks, timeout=1.0)
            raise

    # -- running --------------------------------------------------------------------

    async def _run(self, record: TaskRecord) -> None:
        lane = self._lanes.get(record.lane)
        if lane is None:
            if self._remote is None:
                self._ledger.failed(record, f"could not start: no lane {record.lane!r}")
            else:
                await self._remote.send_late(record)
            return
        if record.cancel_reason is not None:  # cancelled before it could start
            self._ledger.cancelled(record, record.cancel_reason)
            return
        if record.state is TaskState.SCHEDULED:
            # Due first, then (with `after=`) the tasks it follows; no lane slot meanwhile.
            if not record.live:
                return  # left to the store at shutdown before it started (`put_off`)
            try:
                await until_due(self._ledger, record)
            except asyncio.CancelledError:  # by id, or at shutdown
                self._ledger.cancelled(record, record.cancel_reason or BY_SERVER)
                raise
        if record.after and self.ordering is not None:
            # Pending meanwhile, and holding no lane slot; a cancel stops the wait.
            if (reason := await self.ordering.blocked(record)) is not None:
                self._ledger.cancelled(record, reason)
                return
        # The task's own context (a copy, made when its asyncio task was created), so
        # this binding is seen by the task and its thread, and by nothing else.
        enter(RecordContext(self._ledger, record))
        # The attempt loop stays in this frame, not in a coroutine it awaits: a
        # GeneratorExit that asyncio throws in here (a thread task raised it) would close
        # an awaited coroutine and be raised again here, past its handler (PEP 380).
        with _NO_SPAN if self.tracer is None else self.tracer.span(record):
            ledger = self._ledger
            while True:
                try:
                    if (
                        lane.limiter is None
                        and record.timeout is None
                        and record.needs is None
                        and not record.requeue
                    ):
                        # The common loop-lane case, without three coroutine frames.
                        ledger.started(record)
                        kept = await lane.execute(record)
                    else:
                        kept = await self._attempt(lane, record)
                # Everything a task raises fails that task alone: KeyboardInterrupt,
                # SystemExit and GeneratorExit included. Only a cancellation that came
                # from us or from the server is a cancellation.
                except BaseException as exc:
                    if cancel_requested(record, exc):
                        # Whatever the task made of it (a cleanup that raised something
                        # else too): cancelled, and never retried.
                        ledger.cancelled(record, record.cancel_reason or BY_SERVER)
                        if isinstance(exc, asyncio.CancelledError):
                            raise
                        return
                    names = exc.type_names if isinstance(exc, RemoteError) else type_names(exc)
                    wait = record.retry_policy().next_wait(record.attempts, names)
                    if wait is not None:
                        ledger.retrying(record, exc, wait)
                        try:
                            await anyio.sleep(wait)
                        except asyncio.CancelledError:
                            ledger.cancelled(record, record.cancel_reason or BY_SERVER)
                            raise
                        continue
                    ledger.failed(record, exc)
                    return
                if record.cancel_reason is not None and not lane.interruptible:
                    # A thread asked to stop returned: it may have stopped early (it checked
                    # `cancelled()`), so what it returned is not its result.
                    ledger.cancelled(record, record.cancel_reason)
                    return
                ledger.succeeded(record, kept)
                return

    async def _attempt(self, lane: Lane, record: TaskRecord) -> Kept | None:
        if lane.limiter is None:
            return await self._execute(lane, record)
        async with lane.limiter:
            return await self._execute(lane, record)

    async def _execute(self, lane: Lane, record: TaskRecord) -> Kept | None:
        self._ledger.started(record)
        store = self._ledger.store
        if record.requeue and store.durable:
            # The attempt is committed before it runs, so "run again after a crash at most
            # 1 + retries times" holds for one that kills its process at once (under load
            # such a crash beat the commit: 3-4 runs with retries=0). A store down: run.
            with contextlib.suppress(StoreUnavailable):
                await store.flush()
        if record.timeout is None:  # no cancel scope to pay for
            return await self._call(lane, record)
        kept = None
        # The timeout covers resolving the dependencies too (a database that hangs).
        with anyio.move_on_after(record.timeout) as scope:
            kept = await self._call(lane, record)
        # `cancel_called`, not only `cancelled_caught`: a thread task with dependencies is
        # waited for (they must not close under it), so it may return past its deadline.
        if scope.cancelled_caught or scope.cancel_called:
            raise TaskTimeout(
                f"{record.name} (id {record.id}) ran longer than its timeout of "
                f"{record.timeout} s{lane.timeout_note}"
            )
        return kept

    async def _call(self, lane: Lane, record: TaskRecord) -> Kept | None:
        needs = record.needs
        if needs is None:
            return await lane.execute(record)
        # Each attempt its own: resolved now, exited when it ends (success, failure,
        # timeout, cancel), before a retry waits.
        async with contextlib.AsyncExitStack() as stack:
            values = await needs.solve(stack, record.app)
            return await lane.execute(record, {**record.kwargs, **values})

    # -- stopping -------------------------------------------------------------------

    def cancel(self, task_id: str, reason: str, *, force: bool = True) -> bool:
        """Cancel a running or waiting task of this runner; False if it has none.

        Without `force`, a task running in a thread (which cannot be interrupted) is only
        asked to stop: `cancelled()` turns true, and the task ends `cancelled` when its
        function returns. With it (shutdown), its thread is abandoned.
        """
        record = self._ledger.find(task_id)
        if record is None or not record.live or record.sending:
            return False
        task = record.task
        if task is None:
            if record.lane not in self._lanes:
                return False  # a remote task being sent: the backend has it, or will
            # Accepted, not started yet (its request is still answering): `_run` sees
            # the reason first thing and never starts it.
            record.cancel_reason = record.cancel_reason or reason
            return True
        if task.done():
            return False
        record.cancel_reason = record.cancel_reason or reason
        lane = self._lanes.get(record.lane)
        if force or record.state is not TaskState.RUNNING or lane is None or lane.interruptible:
            task.cancel()
        return True

    async def close(self, grace: float) -> None:
        """Refuse further starts, cancel what is left, wait up to `grace` for it."""
        self._closed = True
        # Starts posted from other threads before the close run now, and are refused.
        await asyncio.sleep(0)
        # The ledger's live records with a running asyncio task: a record settles inside
        # its task, so one that settled has nothing left to cancel.
        tasks = [(r, r.task) for r in self._ledger.live() if r.task is not None]
        for record, _ in tasks:
            self.cancel(record.id, SHUTDOWN)
        if not tasks:
            return
        # Bounded: a task that catches the cancellation and keeps awaiting must not hold
        # the server's shutdown past its budget.
        _, pending = await asyncio.wait([task for _, task in tasks], timeout=grace)
        for record, task in tasks:
            if task in pending:
                logger.warning(
                    "shutdown: %s ignored its cancellation for %.1f s; leaving it",
                    task.get_name(),
                    grace,
                )
                # Settled now, so that the store records its end before it closes; a
                # result the task produces later is not recorded.
                if record.live and not record.sending:
                    self._ledger.cancelled(record, ABANDONED)
