"""The process lane: sync callables in anyio worker processes, via the trampoline in
`lanes.process.worker`.

A timeout or a crash kills the worker's whole process group, so the processes a task
started (an ffmpeg, a shell) die with it instead of running on as orphans. The parent
learns which worker runs which attempt from the slot board, a small shared file the
workers write their pid into (`lanes.process.board`): no extra round trip per call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_process
from anyio import BrokenWorkerProcess, CapacityLimiter

from ..._context import INTERVAL
from ..._error_text import TRACEBACK_LIMIT, error_text
from ..._errors import RemoteError, WorkerCrashed
from ..._record import TaskRecord
from ..._results import LIMIT, Kept
from . import worker as _process
from .board import PID, SLOT, Board, read_report
from .descendants import descendants, kill_all

__all__ = ["ProcessLane"]

logger = logging.getLogger("fastapi_offload")


class ProcessLane:
    """Sync callables in worker processes, `capacity` at a time, at the given priority."""

    name = "process"
    timeout_note = "; its worker process and the processes it started were killed" + (
        "" if sys.platform == "linux" else " (those in a session of their own may live on)"
    )
    interruptible = True

    def __init__(
        self,
        capacity: int,
        priority: str,
        result_limit: int = LIMIT,
        report: Callable[[TaskRecord, float, str | None], None] = lambda *_: None,
    ) -> None:
        self.capacity = capacity
        self.priority = priority
        self.result_limit = result_limit
        # Where progress read off the board goes (the ledger's `progress`).
        self.report = report
        # Attempts running with a slot, and the last report seen from each: what the
        # watcher polls while any runs.
        self._watched: dict[int, tuple[TaskRecord, int]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.limiter = CapacityLimiter(capacity)
        # anyio's call takes a limiter too; ours is taken first (by the runner) so that
        # timeouts count running time only, which leaves this one uncontended.
        self._inner = CapacityLimiter(capacity)
        self.crashed = 0
        self.cpu_seconds = 0.0
        # Made on the first task: an app that never uses the lane creates no file.
        self._board: Board | None = None
        self._board_failed = False

    async def prestart(self) -> None:
        """Start every worker now (and set its priority) so the first task is warm.

        Raises `WorkerCrashed` saying why when a worker cannot start.
        """
        failures: list[BrokenWorkerProcess] = []

        async def ping() -> None:
            try:
                async with self.limiter:
                    await anyio.to_process.run_sync(
                        _process.noop, self.priority, os.getpid(), limiter=self._inner
                    )
            except BrokenWorkerProcess as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(self.capacity):
                tg.start_soon(ping)
        if failures:
            raise WorkerCrashed(
                f"could not start the process lane's workers: {_why(failures[0])}"
            ) from failures[0]

    async def keep_warm(self, idle: Callable[[], bool], interval: float = 120.0) -> None:
        """Ping every worker each `interval` seconds while `idle()`; never raises."""
        # anyio kills workers idle for 5 minutes when the next call comes; a periodic
        # call to every worker keeps pre-started workers from going cold.
        while True:
            await anyio.sleep(interval)
            if idle():
                try:
                    await self.prestart()
                except Exception as exc:  # a keep-warm failure must not stop the app
                    logger.warning("could not keep the process workers warm: %s", exc)

    async def execute(
        self, record: TaskRecord, kwargs: dict[str, Any] | None = None
    ) -> Kept | None:
        """Run one attempt in a worker; return its encoded result if it is kept.
        (`kwargs` is never given: a task with dependencies is refused on this lane.)

        Raises `RemoteError` when the function raised there and `WorkerCrashed` when the
        worker died. Cancelled, it kills the worker and the processes the task started.
        """
        board = self._board
        if board is None and not self._board_failed:
            board = self._open_board()
        slot = board.take() if board is not None else -1
        level = logging.getLogger().getEffectiveLevel()
        if board is not None and slot >= 0:
            self._watch(slot, record, board)
        call = asyncio.ensure_future(
            anyio.to_process.run_sync(
                _process.run,
                record.func,
                record.args,
                record.kwargs,
                self.priority,
                level,
                board.path if board is not None else "",
                slot,
                (record.id, record.name),
                self.result_limit if record.keep_result else 0,
                os.getpid(),
                cancellable=True,
                limiter=self._inner,
            )
        )
        try:
            try:
                # Shielded: cancelled (a timeout, a cancel by id), the processes the task
                # started in sessions of their own are found first, while the worker
                # still lives and is their ancestor; then anyio kills the worker.
                outcome = await asyncio.shield(call)
            except asyncio.CancelledError:
                self._stop(call, board, slot)
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([call])
                if not call.cancelled():
                    call.exception()  # it ended meanwhile: retrieved, so asyncio is quiet
                raise
            ok, error, tb, records, cpu, kept, names, last = outcome
        except BrokenWorkerProcess as exc:
            self.crashed += 1
            raise WorkerCrashed(f"{record.name} (id {record.id}): {_why(exc)}") from exc
        finally:
            # On every way out, cancellation included: no await, so nothing can stop it.
            self._watched.pop(slot, None)
            if not self._watched and self._watcher is not None:
                self._watcher.cancel()  # nothing left to watch: no poll outlives the loop
                self._watcher = None
            if board is not None:
                board.give_back(slot)
        self.cpu_seconds += cpu
        if last is not None:
            self.report(record, *last)
        for data in records:
            data["offload_task_id"] = record.id
            log_record = logging.makeLogRecord(data)
            logging.getLogger(log_record.name).handle(log_record)
        if not ok:
            # Bounded again on this side: the worker may run code that is not ours.
            raise RemoteError(error_text(error or ""), error_text(tb or "", TRACEBACK_LIMIT), names)
        return kept

    @staticmethod
    def _stop(call: asyncio.Future[_process.Outcome], board: Board | None, slot: int) -> None:
        pid = 0
        if board is not None and slot >= 0:
            (pid,) = PID.unpack_from(board.map, slot * SLOT)
        if pid:
            # Killed first, so that none is left behind as an orphan (whose parent pid
            # no longer leads back here). Those in the worker's group die with it.
            kill_all(descendants(pid), signal.SIGKILL)
        call.cancel()  # anyio kills the worker (`cancellable=True`)

    def _watch(self, slot: int, record: TaskRecord, board: Board) -> None:
        self._watched[slot] = (record, 0)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(
                self._poll(board), name="offload:process-progress"
            )

    async def _poll(self, board: Board) -> None:
        # Progress crosses from the workers through the board while their tasks run:
        # read every `INTERVAL` while any attempt runs, then stop (an idle lane costs
        # nothing). A report is passed on only when its slot's seqlock counter moved.
        while self._watched:
            await asyncio.sleep(INTERVAL)
            for slot, (record, seen) in list(self._watched.items()):
                found = read_report(board.map, slot)
                current = self._watched.get(slot)
                if found is not None and found[0] != seen and current and current[0] is record:
                    self._watched[slot] = (record, found[0])
                    self.report(record, found[1], found[2])

    def _open_board(self) -> Board | None:
        try:
            self._board = Board(self.capacity)
        except OSError as exc:
            # Tasks still run; only the processes they start are not killed with them.
            self._board_failed = True
            logger.warning(
                "could not create the process lane's slot board (%s): a timeout or crash "
                "will kill the worker but not the processes its task started",
                exc,
            )
        return self._board


def _why(exc: BrokenWorkerProcess) -> str:
    if "initialization" in str(exc):
        # anyio starts each worker by re-running the app's main module (as
        # `__mp_main__`): unguarded module-level code there (a server start, a
        # blocking call, an exception) breaks every worker.
        return (
            "a new worker process failed while starting. Each worker re-imports the "
            "program's main module: put module-level code that starts things (servers, "
            "event loops, long work) under `if __name__ == '__main__':`, and check that "
            "the main module imports cleanly in a fresh interpreter."
        )
    return (
        "the worker process running it died (killed, crashed or out of memory); the "
        "next task gets a fresh worker. Check the system log for an OOM kill, or run "
        "the function in a thread to see its error."
    )
