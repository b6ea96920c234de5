"""The scheduler of periodic tasks, and what `Offload.schedules()` reports of them.

In a detached runtime (started by `Lifecycle.open`, stopped first by `close`), one
asyncio task per periodic task sleeps until its next tick, claims the tick in the store
(`Store.claim_tick`: with a durable store exactly one process of those sharing it takes
each tick) and, when this process took it, starts it as an ordinary task of the runtime:
`admit`, `commit`, `start`, as `Offload.submit` does, so each run has an id, a status,
retries, a timeout, a lane, a dashboard row and metrics.

A loop that wakes late (a stalled process) runs the latest tick due only: never a
backlog. At start-up, a tick missed while no process ran is run once (`catch_up=True`)
or skipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import time
from datetime import datetime, timezone

import anyio

from .._errors import QueueFull
from .._models import ScheduleInfo, TaskState
from .._record import TaskRecord
from ..stores.base import Tick
from .ids import IdSource
from .runtime import Runtime
from .timetable import PeriodicTask

__all__ = ["Scheduler", "last_runs", "schedules", "server_workers", "utc"]

logger = logging.getLogger("fastapi_offload")

RETRY_AFTER_BUG = 1.0  # seconds before a periodic task's loop goes on after a bug of ours


class Scheduler:
    """Runs the periodic tasks of one runtime (`runtime.periodic`) while it is started."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._loops: list[asyncio.Task[None]] = []
        self._ticking: set[asyncio.Task[None]] = set()
        self._new_id = IdSource()

    def start(self) -> None:
        periodic = self._runtime.periodic
        if not len(periodic):
            return
        periodic.running = True
        if not self._runtime.store.durable:
            _warn_of_workers([task.name for task in periodic])
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._run(task), name=f"offload:periodic:{task.name}")
            for task in periodic
        ]

    async def stop(self) -> None:
        """Start no more ticks; wait for a tick being claimed and started to be (it is
        bounded by the store timeout), so that no tick is claimed and left unrun."""
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        await asyncio.gather(*self._ticking, return_exceptions=True)
        self._runtime.periodic.running = False

    async def _run(self, task: PeriodicTask) -> None:
        done = await self._first(task)
        while True:
            try:
                await _sleep_until(task.schedule.after(done))
                # The latest tick due: after a stall, one run, not one per tick missed.
                tick = task.schedule.latest(time.time())
                if tick <= done:
                    continue  # woke a little early (sleeps follow the monotonic clock)
                done = tick
                await self._tick(task, tick)
            except Exception:
                logger.exception("periodic task %s: the scheduler failed; going on", task.name)
                await anyio.sleep(RETRY_AFTER_BUG)

    async def _first(self, task: PeriodicTask) -> float:
        """At start-up: the last tick handled, after the catch-up of a missed one."""
        latest = task.schedule.latest(time.time())
        try:
            last = (await self._runtime.store.ticks([task.name])).get(task.name)
        except Exception as exc:
            logger.warning(
                "periodic task %s: could not read its last run at start-up, so a tick missed "
                "while no process ran is not run: %s",
                task.name,
                exc,
            )
            return latest
        if last is None or last.tick >= latest:
            return latest  # first start, or none missed: the next tick is the next run
        if task.catch_up:
            logger.info(
                "periodic task %s: the tick of %s was missed while no process ran; it runs "
                "now (catch_up=True)",
                task.name,
                utc(latest),
            )
            await self._tick(task, latest)
        else:
            logger.info(
                "periodic task %s: the tick of %s was missed while no process ran; skipped "
                "(catch_up=False), next at %s",
                task.name,
                utc(latest),
                utc(task.schedule.after(latest)),
            )
        return latest

    async def _tick(self, task: PeriodicTask, tick: float) -> None:
        # In a task of its own, shielded: a stop while the tick is claimed must not leave
        # it claimed (no other process would run it) and not started.
        ticking = asyncio.get_running_loop().create_task(self._claim_and_start(task, tick))
        self._ticking.add(ticking)
        ticking.add_done_callback(self._ticking.discard)
        await asyncio.shield(ticking)

    async def _claim_and_start(self, task: PeriodicTask, tick: float) -> None:
        runtime, when = self._runtime, utc(tick)
        task_id = self._new_id()  # claimed with the tick, then the task's id
        try:
            claim = await runtime.store.claim_tick(task.name, tick, task_id, overlap=task.overlap)
        except Exception as exc:
            logger.warning(
                "periodic task %s: the tick of %s is skipped: the task store could not claim "
                "it: %s",
                task.name,
                when,
                exc,
            )
            return
        if not claim.claimed:
            logger.debug("periodic task %s: another process took the tick of %s", task.name, when)
            return
        if claim.running is not None:
            logger.warning(
                "periodic task %s: the tick of %s is skipped: its previous run (task id %s) "
                "is still running; pass overlap=True to let runs overlap",
                task.name,
                when,
                claim.running,
            )
            return
        try:
            record = runtime.admit(task.func, (), {}, task.settings, task_id=task_id)
        except QueueFull as exc:
            logger.warning("periodic task %s: the tick of %s is skipped: %s", task.name, when, exc)
            return
        except Exception as exc:
            logger.error("periodic task %s: the tick of %s cannot start: %s", task.name, when, exc)
            return
        if not isinstance(record, TaskRecord):
            return  # a handle: an idempotency key some task holds (a periodic task has none)
        try:
            await runtime.commit([record])  # write-ahead to a durable store; sent if remote
        except Exception as exc:  # the record was discarded
            logger.warning("periodic task %s: the tick of %s is skipped: %s", task.name, when, exc)
            return
        if runtime.is_local(record):
            runtime.start(record)


async def _sleep_until(moment: float) -> None:
    await anyio.sleep(max(moment - time.time(), 0.0))


def utc(moment: float) -> str:
    """A tick time as the logs show it: UTC, to the millisecond."""
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(" ", "milliseconds")


# -- what `Offload.schedules()` and the dashboard show --------------------------------


async def last_runs(runtime: Runtime) -> dict[str, Tick]:
    """The last tick of each periodic task the store holds (every process sharing it);
    raises `StoreUnavailable` when it cannot be read in time."""
    return await runtime.store.ticks([task.name for task in runtime.periodic])


def schedule_info(task: PeriodicTask, last: Tick | None, now: float) -> ScheduleInfo:
    """`task` as `schedules()` reports it, its last run as the store holds it."""
    state = None
    if last is not None and last.task_id is not None:
        state = TaskState.UNKNOWN if last.state is None else TaskState(last.state)
    return ScheduleInfo(
        name=task.name,
        schedule=task.schedule.text,
        next_run=task.schedule.after(now),
        last_run=None if last is None else last.task_tick,
        last_task_id=None if last is None else last.task_id,
        last_state=state,
        catch_up=task.catch_up,
        overlap=task.overlap,
    )


async def schedules(runtime: Runtime) -> list[ScheduleInfo]:
    """Each periodic task of `runtime`, its next tick and its last run; a last run sent
    to a remote backend has the backend's state. Raises what `Offload.status` raises."""
    found, now, infos = await last_runs(runtime), time.time(), []
    for task in runtime.periodic:
        info = schedule_info(task, last := found.get(task.name), now)
        if last is not None and last.task_id is not None and last.lane is not None:
            if not runtime._local_lane(last.lane):  # a backend's: its state is there
                status = await runtime.status(last.task_id)
                info = dataclasses.replace(info, last_state=status.state)
        infos.append(info)
    return infos


# -- the warning of a memory store under several worker processes ---------------------


def server_workers() -> int | None:
    """How many worker processes the server runs, as far as this process can tell: 1
    when no `multiprocessing` parent started it; the `workers` of the config that
    uvicorn's supervisor (`--workers N`, `--reload`: 1) passed to the process it spawned,
    read from this process's `multiprocessing` object; `None` when a parent started it
    but says nothing (maybe one of several workers)."""
    if multiprocessing.parent_process() is None:
        return 1
    kwargs = getattr(multiprocessing.current_process(), "_kwargs", None)
    config = kwargs.get("config") if isinstance(kwargs, dict) else None
    workers = getattr(config, "workers", None)
    if isinstance(workers, int) and not isinstance(workers, bool) and workers > 0:
        return workers
    return None


def _warn_of_workers(names: list[str]) -> None:
    workers = server_workers()
    if workers == 1:
        return
    parent = multiprocessing.parent_process()
    how = (
        f"each of the {workers} worker processes of this server"
        if workers is not None
        else f"this process (started by process {parent.pid if parent else '?'}) and each "
        "other worker process of this server, if there are several,"
    )
    logger.warning(
        "periodic tasks %s: the task store is memory, so %s runs every tick of them. Set "
        "OFFLOAD_STORE to a sqlite:/// file or a redis:// URL that the processes share, "
        "and one process runs each tick",
        ", ".join(names),
        how,
    )
