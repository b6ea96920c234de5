"""Value objects shared by the runtime, the status store and the backends."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._public import public
from ._retry import RetryPolicy

__all__ = [
    "LaneStats",
    "OffloadStats",
    "ScheduleInfo",
    "TaskCall",
    "TaskHandle",
    "TaskInfo",
    "TaskState",
]


@public
class TaskState(str, enum.Enum):
    """Where a task is in its life. `UNKNOWN` is the state of an id never seen."""

    #: Accepted with `options(delay=...)` or `options(at=...)`: waiting until `due_at`,
    #: holding no lane slot (it becomes `pending` when due).
    SCHEDULED = "scheduled"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Accepted, but the process running it stopped (killed, crashed) before it ended;
    #: reported by a durable store after the owner's lease ran out. `error` says why.
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.INTERRUPTED}
)


@public
@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A snapshot of one task's status, as returned by `Offload.status()`.

    Times are Unix timestamps (`time.time()`); `lane` is `loop`, `thread`, `process`
    or the backend's name. `error` is the `repr` of the exception of a failed task, or
    why a cancelled or interrupted one ended; on a succeeded task it says why its
    result was not kept (not JSON, or too large). `result` is the return value of a
    succeeded task that keeps its result (`keep_result`), as JSON data. `progress` (0.0
    to 1.0) and `progress_message` are the task's last `report_progress()`. `owner` is
    what `tasks.options(owner=...)` recorded (the user who started it), for a status
    router's `owner=` check; it is not in `to_dict()`, so a status route never shows it.
    `due_at` is when a delayed task (`options(delay=/at=)`) may start: it is `scheduled`
    until then, and keeps `due_at` afterwards.
    """

    id: str
    name: str
    state: TaskState
    lane: str = ""
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    error: str | None = None
    result: Any = None
    progress: float | None = None
    progress_message: str | None = None
    owner: str | None = None
    due_at: float | None = None  # a delayed task's start time (epoch seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state.value,
            "lane": self.lane,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "attempts": self.attempts,
            "error": self.error,
            "result": self.result,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "due_at": self.due_at,
        }


@public
@dataclass(frozen=True)
class TaskCall:
    """One call as handed to a remote `Backend`: a registered name and its arguments.

    `name` is the callable's import path (`module.qualname`), which is also the name
    it is registered under on the worker side. `retry_on` holds the `module.qualname`
    of the exception types that are retried (`None`: every failure); `retry_backoff`
    doubles `retry_delay` on each retry, with jitter (see `fastapi_offload._retry`).
    `due_at` (a Unix time) is when a delayed call (`options(delay=/at=)`) may start, or
    `None` for at once: a backend that cannot hold a call until then must not declare
    `delays = True` (a delayed call for it is then refused in the request).
    """

    id: str
    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 1.0
    retry_backoff: bool = False
    retry_on: tuple[str, ...] | None = None
    due_at: float | None = None

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.retries, self.retry_delay, self.retry_backoff, self.retry_on)


@public
@dataclass(frozen=True)
class LaneStats:
    """Counters of one lane. `waiting` tasks are accepted but not yet running;
    `scheduled` ones (`options(delay=/at=)`) are accepted and not due yet: they hold no
    slot and do not count against `max_pending` until they are due.

    `abandoned` (thread lane): threads still running a function whose task ended (it
    timed out, or was given up at shutdown). A thread cannot be killed, so each keeps
    one of the lane's `capacity` slots until its function returns.
    """

    waiting: int
    running: int
    capacity: int
    max_pending: int
    succeeded: int
    failed: int
    cancelled: int
    retried: int
    abandoned: int = 0
    scheduled: int = 0


@public
@dataclass(frozen=True)
class TaskHandle:
    """What `add_task` returns: the task's id (for `Offload.status`), name and lane."""

    id: str
    name: str
    lane: str
    #: `options(key=...)` found a task with that key (pending, scheduled, running, or
    #: finished less than `key_ttl` ago): this is that task, and nothing new started.
    existing: bool = False


@public
@dataclass(frozen=True)
class OffloadStats:
    """A snapshot of the runtime's counters, from `Offload.stats()`."""

    lanes: dict[str, LaneStats]
    loop_blocks: int
    longest_loop_block: float
    process_crashes: int
    process_cpu_seconds: float
    cpu_bound_callables: tuple[str, ...]
    statuses_kept: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "lanes": {name: vars(lane) for name, lane in self.lanes.items()},
            "loop_blocks": self.loop_blocks,
            "longest_loop_block": self.longest_loop_block,
            "process_crashes": self.process_crashes,
            "process_cpu_seconds": self.process_cpu_seconds,
            "cpu_bound_callables": list(self.cpu_bound_callables),
            "statuses_kept": self.statuses_kept,
        }


@public
@dataclass(frozen=True)
class ScheduleInfo:
    """One periodic task (`@offload.every`, `@offload.cron`), from `Offload.schedules()`.

    `name` is its function's `module.qualname`; `schedule` says when it runs (`every
    300 s`, `cron */5 * * * * (UTC)`). Times are Unix timestamps: `next_run` is its next
    tick; `last_run` the tick of its last run, `last_task_id` that run's task (look it up
    with `Offload.status`) and `last_state` its state (`unknown` once the store forgot
    it); all three `None` before a first run. With a durable store they cover every
    process sharing it; with the memory store, this process only.
    """

    name: str
    schedule: str
    next_run: float
    last_run: float | None = None
    last_task_id: str | None = None
    last_state: TaskState | None = None
    catch_up: bool = False
    overlap: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schedule": self.schedule,
            "next_run": self.next_run,
            "last_run": self.last_run,
            "last_task_id": self.last_task_id,
            "last_state": None if self.last_state is None else self.last_state.value,
            "catch_up": self.catch_up,
            "overlap": self.overlap,
        }
