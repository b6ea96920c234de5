"""Task records and a bounded status store."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ._models import TaskInfo, TaskState

__all__ = ["StatusStore", "TaskRecord"]


@dataclass(eq=False, slots=True)
class TaskRecord:
    """The runtime's mutable record of one task, from `add_task` to its end."""

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

    def info(self) -> TaskInfo:
        return TaskInfo(
            id=self.id,
            name=self.name,
            state=self.state,
            lane=self.lane,
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            attempts=self.attempts,
            error=self.error,
        )


class StatusStore:
    """Active tasks are always kept; finished ones up to `capacity`, oldest forgotten first.

    Finished records keep only their `TaskInfo` (no function, arguments or result), so
    memory stays bounded however many tasks run.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._active: dict[str, TaskRecord] = {}
        self._finished: OrderedDict[str, TaskInfo] = OrderedDict()

    def add(self, record: TaskRecord) -> None:
        self._active[record.id] = record

    def finish(self, record: TaskRecord) -> None:
        self._active.pop(record.id, None)
        self._finished[record.id] = record.info()
        while len(self._finished) > self.capacity:
            self._finished.popitem(last=False)

    def forget(self, record: TaskRecord) -> None:
        self._active.pop(record.id, None)

    def get(self, task_id: str) -> TaskInfo | None:
        record = self._active.get(task_id)
        if record is not None:
            return record.info()
        return self._finished.get(task_id)

    def is_active(self, task_id: str) -> bool:
        return task_id in self._active

    def active(self) -> list[TaskRecord]:
        return list(self._active.values())

    def __len__(self) -> int:
        return len(self._active) + len(self._finished)
