"""`TaskRecord`: the runtime's mutable record of one task, from `add_task` to its end.

Only `_ledger.Ledger` changes a record's `state` (and the fields that go with it);
lanes and runners read records and report to the ledger.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._models import TaskCall, TaskInfo, TaskState
from ._retry import RetryPolicy

if TYPE_CHECKING:
    import asyncio

    from ._task_deps import TaskDependencies

__all__ = ["Snapshot", "TaskRecord", "snapshot_info", "with_error"]

_PENDING, _RUNNING, _SCHEDULED = TaskState.PENDING, TaskState.RUNNING, TaskState.SCHEDULED

#: `TaskRecord.snapshot()`: `TaskInfo`'s fields in its order, without `result`.
Snapshot = tuple[
    str,  # id
    str,  # name
    TaskState,
    str,  # lane
    float,  # created_at
    float | None,  # started_at
    float | None,  # finished_at
    int,  # attempts
    str | None,  # error
    float | None,  # progress
    str | None,  # progress_message
    str | None,  # owner
    float | None,  # due_at
]


def snapshot_info(snapshot: Snapshot, result: Any = None) -> TaskInfo:
    """The `TaskInfo` of a `TaskRecord.snapshot()`, with `result`."""
    (task_id, name, state, lane, created, started, ended, attempts, error,
     progress, message, owner, due_at) = snapshot  # fmt: skip
    return TaskInfo(
        task_id, name, state, lane, created, started, ended, attempts, error, result,
        progress, message, owner, due_at,
    )  # fmt: skip


def with_error(snapshot: Snapshot, error: str) -> Snapshot:
    """The snapshot with `error` in place of its own."""
    (task_id, name, state, lane, created, started, ended, attempts, _,
     progress, message, owner, due_at) = snapshot  # fmt: skip
    return (
        task_id, name, state, lane, created, started, ended, attempts, error,
        progress, message, owner, due_at,
    )  # fmt: skip


@dataclass(eq=False, slots=True)
class TaskRecord:
    id: str
    name: str
    lane: str
    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    timeout: float | None
    retries: int
    retry_delay: float
    declared: bool = False  # settings came from a decorator (silences the CPU advice)
    state: TaskState = TaskState.PENDING
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    error: str | None = None
    # Set by the runtime before it cancels the task (shutdown, and later cancel-by-id),
    # so that a `CancelledError` the task raises itself is told apart from ours.
    cancel_reason: str | None = None
    # The remote backend holds the task now; the record is kept only for look-ups.
    handed_off: bool = False
    # A send to the backend is under way after its caller was cancelled: the send
    # settles the record when it ends (handed off, or failed).
    sending: bool = False
    # Declared safe to run again (`@task(requeue=True)`): with a durable store, a task
    # whose process died is run again from `payload` instead of marked interrupted.
    requeue: bool = False
    payload: bytes | None = None  # pickle of (func, args, kwargs), durable requeue only
    retry_backoff: bool = False
    retry_on: tuple[str, ...] | None = None  # `_retry.type_path` names; None: any failure
    keep_result: bool = False
    result: str | None = None  # JSON text of a kept result (`_results.encode`)
    progress: float | None = None  # the last `report_progress`, 0.0-1.0
    progress_message: str | None = None
    # What the task declares with Depends(...), resolved per attempt (`_task_deps`), and
    # the app whose `dependency_overrides` apply.
    needs: TaskDependencies | None = None
    after: tuple[str, ...] = ()  # ids of the tasks that must succeed before it starts
    app: Any = None
    owner: str | None = None  # `options(owner=...)`: the user who started it (`_owner`)
    key: str | None = None  # `options(key=...)`: the idempotency key it holds
    due_at: float | None = None  # `options(delay=/at=)`: when it may start (epoch seconds)
    # The asyncio task running it, set by the runner when it starts: found through the
    # ledger (the one registry of live tasks) to cancel it or wait for it.
    task: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        """Scheduled, pending or running here: not finished, and not handed to a remote
        backend."""
        # Identity tests: this runs on every transition (an enum's hash is Python code).
        state = self.state
        return (
            state is _PENDING or state is _RUNNING or state is _SCHEDULED
        ) and not self.handed_off

    def info(self) -> TaskInfo:
        """The status now as a `TaskInfo`, its kept result decoded."""
        return snapshot_info(
            self.snapshot(), None if self.result is None else json.loads(self.result)
        )

    def snapshot(self) -> Snapshot:
        """The status now, as the memory store keeps it (`snapshot_info` makes it a `TaskInfo`
        when read): taken under the ledger's lock at each transition, so its fields agree
        with each other, and a tuple costs a tenth of a frozen dataclass to build."""
        return (
            self.id,
            self.name,
            self.state,
            self.lane,
            self.created_at,
            self.started_at,
            self.finished_at,
            self.attempts,
            self.error,
            self.progress,
            self.progress_message,
            self.owner,
            self.due_at,
        )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.retries, self.retry_delay, self.retry_backoff, self.retry_on)

    def task_call(self) -> TaskCall:
        """The call as a remote backend receives it: a registered name and its arguments."""
        return TaskCall(
            id=self.id,
            name=self.name,
            args=self.args,
            kwargs=self.kwargs,
            timeout=self.timeout,
            retries=self.retries,
            retry_delay=self.retry_delay,
            retry_backoff=self.retry_backoff,
            retry_on=self.retry_on,
            due_at=self.due_at,
        )
