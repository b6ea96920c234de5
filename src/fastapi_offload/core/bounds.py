"""A lane's bounds and counters: how many of its tasks may run and wait, how many do,
and the refusal (`QueueFull`, a 503) of a task past the bound. Changed by the ledger
only, under its lock."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import QueueFull
from .._models import LaneStats, TaskState
from .._record import TaskRecord

__all__ = ["Counters", "LaneBounds"]


@dataclass(frozen=True, slots=True)
class LaneBounds:
    capacity: int  # tasks that may run at once
    max_pending: int  # admission bound
    # Coroutines wait for no worker: on the loop lane the bound counts running ones too.
    bound_counts_running: bool = False


class Counters:
    # `scheduled`: accepted with a delay and not due yet; they count against no bound
    # (`max_pending` bounds what waits for a slot), and move to `waiting` when due.
    __slots__ = ("cancelled", "failed", "retried", "running", "scheduled", "succeeded", "waiting")

    def __init__(self) -> None:
        self.waiting = self.running = self.scheduled = 0
        self.succeeded = self.failed = self.cancelled = self.retried = 0

    def leave(self, state: TaskState) -> None:
        """A task of the lane is no longer in `state` (scheduled, waiting or running)."""
        if state is TaskState.RUNNING:
            self.running -= 1
        elif state is TaskState.SCHEDULED:
            self.scheduled -= 1
        else:
            self.waiting -= 1

    def end(self, state: TaskState, ended: TaskState) -> None:
        """A task of the lane in `state` ended as `ended` (succeeded, failed, cancelled)."""
        self.leave(state)
        if ended is TaskState.SUCCEEDED:
            self.succeeded += 1
        elif ended is TaskState.FAILED:
            self.failed += 1
        else:
            self.cancelled += 1

    def full(self, bounds: LaneBounds, record: TaskRecord) -> QueueFull | None:
        """The refusal of `record` when the lane is at its bound, else `None`."""
        load = self.waiting + (self.running if bounds.bound_counts_running else 0)
        if load < bounds.max_pending:
            return None
        what = "waiting or running" if bounds.bound_counts_running else "waiting"
        return QueueFull(
            f"the {record.lane} lane is full ({load} tasks {what}, "
            f"max_pending={bounds.max_pending}); {record.name} was not accepted. "
            "Retry later, or raise max_pending / the lane's workers if the "
            "machine has room."
        )

    def stats(self, bounds: LaneBounds, abandoned: int) -> LaneStats:
        return LaneStats(
            waiting=self.waiting,
            running=self.running,
            capacity=bounds.capacity,
            max_pending=bounds.max_pending,
            succeeded=self.succeeded,
            failed=self.failed,
            cancelled=self.cancelled,
            retried=self.retried,
            abandoned=abandoned,
            scheduled=self.scheduled,
        )
