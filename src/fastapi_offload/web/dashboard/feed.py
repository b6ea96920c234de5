"""What the dashboard shows: recent tasks kept by a ledger observer, and the snapshot
(lanes, tasks, periodic tasks, loop blocks, CPU advice, crashes) built from one runtime,
with the tasks and lane figures of the other processes sharing its store
(`web.dashboard.shared`)."""

from __future__ import annotations

import asyncio
import reprlib
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ..._record import TaskRecord
from ...core.runtime import Runtime
from ...lanes.advisor import CpuFinding
from .periodic import periodic_view
from .shared import SharedView, newest, this_process

__all__ = ["Feed"]

RECENT = 100  # ended tasks kept
LIVE_MAX = 400  # tasks kept in all, live ones included
SHOWN = 50  # tasks in a snapshot, newest first
TEXT_MAX = 2000  # characters of an error or stack
RESULT_MAX = 200  # characters of a result's JSON
CRASHES_SHOWN = 10
CRASHED = "WorkerCrashed("  # how the ledger writes a crashed worker's error (a repr)
ARGUMENTS_MAX = 120  # characters of the arguments' repr (show_arguments=True)
CACHE = 0.2  # seconds a snapshot serves every open page (one store query, not one each)
WORKERS_EVERY = 15.0  # seconds between two asks of a remote backend for its live workers

_repr = reprlib.Repr()  # its keyword arguments are Python 3.12+
_repr.maxlevel, _repr.maxstring, _repr.maxother = 2, 40, 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4


class _Row:
    """One recent task: the live record while it runs, a copy of its end afterwards (so
    that its arguments and result are not kept alive by the dashboard)."""

    __slots__ = ("arguments", "call", "ended", "id", "record")

    def __init__(self, record: TaskRecord, keep_call: bool) -> None:
        self.id = record.id
        self.record: TaskRecord | None = record  # `None` once ended
        self.ended: dict[str, Any] | None = None
        self.arguments: str | None = None
        # Only with show_arguments: the repr is made outside the ledger's lock, later.
        self.call = (record.args, record.kwargs) if keep_call else None


class Feed:
    """The dashboard's ledger observer: keeps the last `RECENT` tasks of one runtime.

    `observe` runs under the ledger's lock, from the loop or a sync endpoint's thread:
    it only moves references. `snapshot` runs on the loop.
    """

    def __init__(self, show_arguments: bool) -> None:
        self.show_arguments = show_arguments
        self.rejected = 0
        self._rows: OrderedDict[str, _Row] = OrderedDict()
        self._lock = threading.Lock()  # `observe` may run in a sync endpoint's thread
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._workers: dict[str, Any] | None = None  # the backend's last answer
        self._asking: asyncio.Task[None] | None = None
        self._asked = -WORKERS_EVERY

    def seed(self, runtime: Runtime) -> None:
        """Take in the tasks that are live already (a feed made after they started)."""
        for record in runtime.ledger.live():
            self.observe("admitted", record)

    def observe(self, event: str, record: TaskRecord) -> None:
        with self._lock:
            row = self._rows.get(record.id)
            if row is None:
                row = self._rows[record.id] = _Row(record, self.show_arguments)
                if event == "rejected":
                    self.rejected += 1
                    row.ended = _ended(record, "rejected")
                    row.call = None  # it never ran: nothing to show
                if len(self._rows) > RECENT:
                    self._drop_one()
            if event == "finished":
                row.ended = _ended(record, record.state.value)
            elif event == "handed_off":
                row.ended = _ended(record, "sent")
            if row.ended is not None:
                row.record = None
        self._cached = None

    def _drop_one(self) -> None:
        # The oldest ended task; a live one only past LIVE_MAX (a lane deep in backlog):
        # a running task must not vanish from the page behind a burst of short ones.
        victim = next((key for key, row in self._rows.items() if row.ended is not None), None)
        if victim is None and len(self._rows) > LIVE_MAX:
            victim = next(iter(self._rows))
        if victim is not None:
            del self._rows[victim]

    async def snapshot(self, runtime: Runtime, *, cancel: bool) -> dict[str, Any]:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < CACHE:
            return self._cached[1]
        built = await self._build(runtime, cancel)
        self._cached = (time.monotonic(), built)
        return built

    async def _build(self, runtime: Runtime, cancel: bool) -> dict[str, Any]:
        now = time.time()
        stats = runtime.stats()
        with self._lock:
            rows = list(self._rows.values())
        label = this_process()
        # Newest first; live tasks are always among those shown, then the latest ended.
        live = [r for r in rows if r.ended is None and runtime.ledger.find(r.id)]
        room = max(SHOWN - len(live), 0)
        ended = [row for row in rows if row.ended is not None][-room:] if room else []
        shown = {id(row) for row in live[-SHOWN:] + ended}
        tasks = [self._task(row, now, label) for row in reversed(rows) if id(row) in shown]
        crashes = [
            self._task(row, now, label)
            for row in reversed(rows)
            if row.ended is not None and (row.ended["error"] or "").startswith(CRASHED)
        ][:CRASHES_SHOWN]
        # The recent tasks and lane figures of every process sharing the store.
        shared = await SharedView.read(runtime, {row.id for row in rows}, SHOWN, now)
        schedules, schedules_error = await periodic_view(runtime)
        self._ask_workers(runtime)
        config = runtime.config
        return {
            "now": now,
            "backend": runtime.backend.name if runtime.backend is not None else None,
            "workers": self._workers,
            # The scheme only: a Redis URL may carry a password.
            "store": config.store.split(":", 1)[0].strip().lower(),
            # A memory store: the page says it shows this process only (of `--workers N`).
            "shared": runtime.store.durable,
            "process": label,
            "processes": shared.processes,
            "accepting": runtime.accepting,
            "cancel": cancel,
            "show_arguments": self.show_arguments,
            "lanes": [{"name": name, **vars(lane)} for name, lane in stats.lanes.items()],
            "rejected": self.rejected,
            "tasks": newest(shared.tasks + tasks, SHOWN),
            "schedules": schedules,  # the periodic tasks
            "store_error": shared.error or schedules_error,
            "loop_blocks": {
                "count": stats.loop_blocks,
                "longest": stats.longest_loop_block,
                "threshold": config.loop_block_threshold,
                "recent": [
                    {
                        "name": block.name,
                        "task_id": block.task_id,
                        "seconds": block.seconds,
                        "where": block.where,
                        "stack": _cut(block.stack),
                        "at": block.at,
                    }
                    for block in reversed(runtime.monitor.recent)
                ],
            },
            "advice": [
                {
                    "name": finding.name,
                    "share": finding.share,
                    "wall": finding.wall,
                    "busy": finding.busy,
                    "promoted": config.auto_promote,
                    "at": finding.at,
                }
                # A copy first: a worker thread may add a finding meanwhile.
                for finding in sorted(list(runtime.advisor.findings.values()), key=_newest)
            ],
            "crashes": {"count": stats.process_crashes, "tasks": crashes},
            "process_cpu_seconds": stats.process_cpu_seconds,
        }

    def _ask_workers(self, runtime: Runtime) -> None:
        # A backend may say how many workers consume its queue (Celery's and RQ's do):
        # asking takes up to a second or two, so it runs beside the snapshots, at most
        # every WORKERS_EVERY seconds, and the page shows the last answer.
        ask = None if runtime.remote is None else runtime.remote.capabilities.workers
        now = time.monotonic()
        if ask is None or self._asking is not None or now - self._asked < WORKERS_EVERY:
            return
        self._asked = now
        self._asking = asyncio.get_running_loop().create_task(
            self._count_workers(ask), name="offload:dashboard-workers"
        )

    async def _count_workers(self, ask: Callable[[], Awaitable[int | None]]) -> None:
        try:
            count = await ask()
        except Exception:  # promised never to raise; a backend of a user's might
            count = None
        finally:
            self._asking = None
        self._workers = {"count": count, "at": time.time()}
        self._cached = None

    def _task(self, row: _Row, now: float, label: str) -> dict[str, Any]:
        # Without the lock: `observe` sets `ended` before it drops `record`, so a row
        # read without its record has its end.
        record = row.record
        view = _live(record) if record is not None else row.ended
        assert view is not None
        started, finished = view["started_at"], view["finished_at"]
        task = {
            **view,
            "duration": None if started is None else (finished or now) - started,
            "here": True,
            "process": label,
        }
        if self.show_arguments:
            if row.call is not None:
                row.arguments, row.call = _arguments(*row.call), None
            task["arguments"] = row.arguments
        return task


def _newest(finding: CpuFinding) -> float:
    return -finding.at


def _live(record: TaskRecord) -> dict[str, Any]:
    state = record.state.value
    return {
        "id": record.id,
        "name": record.name,
        "lane": record.lane,
        "state": "sending" if record.sending else state,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "attempts": record.attempts,
        "retries": record.retries,
        "error": _cut(record.error),
        "result": None,
        "progress": record.progress,
        "progress_message": _cut(record.progress_message, RESULT_MAX),
        "due_at": record.due_at,
        "live": True,
    }


def _ended(record: TaskRecord, state: str) -> dict[str, Any]:
    # Under the ledger's lock: slices only, no parsing of the result.
    view = _live(record)
    view["state"], view["live"] = state, False
    view["result"] = _cut(record.result, RESULT_MAX)
    if state == "rejected":
        view["error"] = f"not accepted: the {record.lane} lane was full (a 503)"
    return view


def _cut(text: str | None, limit: int = TEXT_MAX) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [_short(value) for value in args]
    parts += [f"{key}={_short(value)}" for key, value in kwargs.items()]
    return _cut(", ".join(parts), ARGUMENTS_MAX) or ""


def _short(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"  # reprlib would build the whole repr first
    try:
        return _repr.repr(value)
    except Exception:  # a user's __repr__ that raises must not break the page
        return f"<{type(value).__name__}>"
