"""The local lanes: loop, thread and process, each with its own limiter and bound."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_process
import anyio.to_thread
from anyio import BrokenWorkerProcess, CapacityLimiter

from . import _process
from ._errors import QueueFull, TaskTimeout, WorkerCrashed
from ._models import LaneStats, TaskState
from ._monitor import LoopMonitor
from ._store import TaskRecord

__all__ = ["CpuAdvisor", "Lane", "LoopLane", "ProcessLane", "RemoteError", "ThreadLane"]

logger = logging.getLogger("fastapi_offload")


class Lane:
    name = ""

    def __init__(self, capacity: int, max_pending: int) -> None:
        self.capacity = capacity
        self.max_pending = max_pending
        self.limiter = CapacityLimiter(capacity)
        # anyio's call takes a limiter too; ours is taken first so that timeouts count
        # running time only, which leaves this one uncontended.
        self._inner = CapacityLimiter(capacity)
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.retried = 0

    def admit(self, name: str) -> None:
        with self._lock:  # a sync endpoint calls this from a worker thread
            if self._load() >= self.max_pending:
                raise QueueFull(
                    f"the {self.name} lane is full ({self._load()} tasks {self._counted}, "
                    f"max_pending={self.max_pending}); {name} was not accepted. Retry "
                    "later, or raise max_pending / the lane's workers if the machine has room."
                )
            self.waiting += 1

    _counted = "waiting"

    def _load(self) -> int:
        return self.waiting

    def withdraw(self) -> None:
        with self._lock:  # admit() may run in a sync endpoint's thread
            self.waiting -= 1

    def stats(self) -> LaneStats:
        return LaneStats(
            waiting=self.waiting,
            running=self.running,
            capacity=self.capacity,
            max_pending=self.max_pending,
            succeeded=self.succeeded,
            failed=self.failed,
            cancelled=self.cancelled,
            retried=self.retried,
        )

    async def run(self, record: TaskRecord) -> None:
        """Run a task to its end: attempts, retries, state, counters and the failure log."""
        while True:
            try:
                await self.run_once(record)
            # SystemExit too: a task calling sys.exit() fails alone, not the whole runtime.
            except (Exception, SystemExit) as exc:
                if record.attempts <= record.retries:
                    self.retried += 1
                    record.state = TaskState.PENDING  # waiting for its next attempt
                    logger.warning(
                        "task %s (id %s) failed (attempt %d of %d), retrying in %s s: %r",
                        record.name,
                        record.id,
                        record.attempts,
                        record.retries + 1,
                        record.retry_delay,
                        exc,
                    )
                    await anyio.sleep(record.retry_delay)
                    continue
                record.state = TaskState.FAILED
                record.error = repr(exc)
                self.failed += 1
                _log_failure(record, exc)
                return
            record.state = TaskState.SUCCEEDED
            self.succeeded += 1
            return

    async def run_once(self, record: TaskRecord) -> None:
        """One attempt: wait for a token, run, raise on failure or timeout."""
        async with self.limiter:
            await self._attempt(record)

    async def _attempt(self, record: TaskRecord) -> None:
        if record.attempts == 0:
            self.withdraw()
        record.attempts += 1
        record.started_at = record.started_at or time.time()
        record.state = TaskState.RUNNING
        self.running += 1
        try:
            if record.timeout is None:  # no cancel scope to pay for
                await self.execute(record)
                return
            with anyio.move_on_after(record.timeout) as scope:
                await self.execute(record)
            if scope.cancelled_caught:
                raise TaskTimeout(
                    f"{record.name} (id {record.id}) ran longer than its timeout of "
                    f"{record.timeout} s{self.timeout_note}"
                )
        finally:
            self.running -= 1

    timeout_note = ""

    async def execute(self, record: TaskRecord) -> None:
        raise NotImplementedError


class LoopLane(Lane):
    """`async def` callables, concurrently on the event loop, each step timed."""

    name = "loop"

    def __init__(self, max_pending: int, monitor: LoopMonitor) -> None:
        # Coroutines need no worker; the bound on concurrency is the bound on pending.
        super().__init__(capacity=max_pending, max_pending=max_pending)
        self.monitor = monitor

    _counted = "waiting or running"

    def _load(self) -> int:
        # Coroutines start at once and wait for no worker: the bound is on all of them.
        return self.waiting + self.running

    async def run_once(self, record: TaskRecord) -> None:
        # Coroutines need no worker to wait for: admission already bounds them.
        await self._attempt(record)

    async def execute(self, record: TaskRecord) -> None:
        coro = record.func(*record.args, **record.kwargs)
        if self.monitor.threshold > 0:
            await self.monitor.timed(coro, record.name, record.id)
        else:
            await coro


class CpuAdvisor:
    """Watches CPU time against wall time of sync callables on the thread lane.

    A thread running pure Python holds the GIL, so its CPU time is close to its wall
    time; a thread waiting on I/O uses little CPU. Several CPU-bound threads share one
    GIL, so each gets about 1/k of the wall time: the ratio is scaled by the number of
    lane threads that were busy. Time spent waiting for a CPU (a busy machine) is not
    counted as wall time. A callable found CPU-bound is named once in a warning,
    and (with `auto_promote`) routed to the process lane.
    """

    MIN_CPU = 0.05
    RATIO = 0.5  # waiting code (I/O, sleep) stays far below; GIL-bound code far above

    def __init__(self) -> None:
        self.flagged: set[str] = set()

    def observe(self, name: str, wall: float, cpu: float, busy: int, declared: bool) -> None:
        if declared or name in self.flagged or cpu < self.MIN_CPU:
            return
        if cpu * max(busy, 1) < self.RATIO * wall:
            return
        self.flagged.add(name)
        logger.warning(
            "%s spent %.0f%% of its %.2f s on the CPU in the thread lane (%d busy threads): "
            "it holds the GIL "
            "and slows every request while it runs. Decorate it with @cpu_bound (or route "
            "it with Offload(routes={%r: 'process'})) to run it in a worker process; "
            "Offload(auto_promote=True) does that automatically. Decorate it with "
            "@io_bound to silence this advice.",
            name,
            100 * cpu / wall,
            wall,
            busy,
            name,
        )


def _run_delay() -> float:
    # Seconds this thread was runnable but waiting for a CPU (Linux schedstat). Taken
    # off the wall time, a busy machine does not make CPU-bound code look like waiting;
    # waiting for the GIL is a sleep, not a run delay, so it still counts.
    try:
        with open("/proc/thread-self/schedstat", "rb") as file:
            return int(file.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _measured(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    on_done: Callable[[float, float], None],
) -> None:
    wall, cpu, delay = time.perf_counter(), time.thread_time(), _run_delay()
    try:
        func(*args, **kwargs)
    finally:
        elapsed = time.perf_counter() - wall - (_run_delay() - delay)
        on_done(max(elapsed, 1e-9), time.thread_time() - cpu)


class ThreadLane(Lane):
    """Sync callables on a thread limiter of our own, never anyio's default one."""

    name = "thread"
    timeout_note = "; the thread cannot be killed and finishes in the background"

    def __init__(self, capacity: int, max_pending: int, advisor: CpuAdvisor) -> None:
        super().__init__(capacity, max_pending)
        self.advisor = advisor

    async def execute(self, record: TaskRecord) -> None:
        declared = record.declared

        def on_done(wall: float, cpu: float) -> None:
            # Runs in the worker thread; `running` is only read, a stale value is harmless.
            self.advisor.observe(record.name, wall, cpu, self.running, declared)

        # abandon_on_cancel: a timeout or shutdown must not wait for a thread that
        # cannot be interrupted; the thread finishes on its own.
        await anyio.to_thread.run_sync(
            functools.partial(_measured, record.func, record.args, record.kwargs, on_done),
            abandon_on_cancel=True,
            limiter=self._inner,
        )


class ProcessLane(Lane):
    """Sync callables in anyio worker processes, through the `_process` trampoline."""

    name = "process"
    timeout_note = "; its worker process was killed"

    def __init__(self, capacity: int, max_pending: int, priority: str) -> None:
        super().__init__(capacity, max_pending)
        self.priority = priority
        self.crashed = 0
        self.cpu_seconds = 0.0

    async def prestart(self) -> None:
        """Start every worker now (and set its priority) so the first task is warm.

        Raises `WorkerCrashed` saying why when a worker cannot start.
        """
        failures: list[BrokenWorkerProcess] = []

        async def ping() -> None:
            try:
                async with self.limiter:
                    await anyio.to_process.run_sync(
                        _process.noop, self.priority, limiter=self._inner
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

    async def keep_warm(self, interval: float = 120.0) -> None:
        # anyio kills workers idle for 5 minutes when the next call comes; a periodic
        # call to every worker keeps pre-started workers from going cold.
        while True:
            await anyio.sleep(interval)
            if self.running == 0 and self.waiting == 0:
                try:
                    await self.prestart()
                except Exception as exc:  # a keep-warm failure must not stop the app
                    logger.warning("could not keep the process workers warm: %s", exc)

    async def execute(self, record: TaskRecord) -> None:
        level = logging.getLogger().getEffectiveLevel()
        try:
            ok, error, tb, records, cpu = await anyio.to_process.run_sync(
                _process.run,
                record.func,
                record.args,
                record.kwargs,
                self.priority,
                level,
                cancellable=True,
                limiter=self._inner,
            )
        except BrokenWorkerProcess as exc:
            self.crashed += 1
            raise WorkerCrashed(f"{record.name} (id {record.id}): {_why(exc)}") from exc
        self.cpu_seconds += cpu
        for data in records:
            data["offload_task_id"] = record.id
            log_record = logging.makeLogRecord(data)
            logging.getLogger(log_record.name).handle(log_record)
        if not ok:
            raise RemoteError(error or "", tb or "")


def _log_failure(record: TaskRecord, exc: BaseException) -> None:
    message = "task %s (id %s, %s lane) failed after %d attempt(s): %r"
    values = (record.name, record.id, record.lane, record.attempts, exc)
    if isinstance(exc, RemoteError):
        logger.error(message + "\n%s", *values, exc.traceback_text)
    elif isinstance(exc, TaskTimeout | WorkerCrashed):
        logger.error(message, *values)
    else:
        logger.error(message, *values, exc_info=exc)


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


class RemoteError(Exception):
    """An exception raised in a worker process, carried back as text."""

    def __init__(self, error: str, traceback_text: str) -> None:
        super().__init__(error)
        self.error = error
        self.traceback_text = traceback_text

    def __repr__(self) -> str:
        return self.error
