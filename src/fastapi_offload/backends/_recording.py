"""`RecordingBackend`, the test double that runs nothing: it records each `TaskCall` for
assertions, and can play a broker that is down. Public as `fastapi_offload.testing`'s."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import BackendUnavailable
from .._models import TaskCall, TaskInfo, TaskState
from .._remote_settings import check_serializer
from ._payload import Serializer, check_call
from ._registry import task_name
from .base import BaseBackend

__all__ = ["RecordingBackend"]


class RecordingBackend(BaseBackend):
    """Records the calls it is given and runs none of them.

    `prepare` applies the real backends' argument check, so a test catches an
    argument that could not travel. `status` answers `pending` for a recorded id
    (`scheduled` for a delayed call before its `due_at`) and `None` for any other;
    `cancel` makes a recorded id `cancelled`. Set
    `available = False` to make `submit` raise `BackendUnavailable`, as a real backend
    does when its broker is down.
    """

    name = "recording"
    cancels = True
    delays = True  # a delayed call is recorded with its `due_at`

    def __init__(self, *, serializer: Serializer = "json") -> None:
        self._serializer = check_serializer(serializer)
        self.calls: list[TaskCall] = []
        self.available = True
        self._submitted_at: dict[str, float] = {}
        #: Ids given to `cancel` while recorded (and not cancelled before).
        self.cancelled: list[str] = []

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RecordingBackend:
        """A fresh instance (no variable is read); used by `OFFLOAD_BACKEND=recording`."""
        return cls()

    def __repr__(self) -> str:
        return f"RecordingBackend(calls={len(self.calls)}, available={self.available})"

    def prepare(self, call: TaskCall) -> None:
        """Raise `NotOffloadable` as a real backend would."""
        check_call(call, backend=self.name, serializer=self._serializer)

    async def submit(self, call: TaskCall) -> None:
        """Record `call`; raise `BackendUnavailable` when `available` is False."""
        if not self.available:
            raise BackendUnavailable(
                f"the recording backend is set unavailable; {call.name} (id {call.id}) "
                "was not submitted"
            )
        self.calls.append(call)
        self._submitted_at[call.id] = time.time()

    async def status(self, task_id: str) -> TaskInfo | None:
        """`pending` for a recorded id (nothing ever runs; `scheduled` before the due
        time of a delayed one), else `None`."""
        for call in self.calls:
            if call.id == task_id:
                cancelled = call.id in self.cancelled
                state = TaskState.PENDING
                if cancelled:
                    state = TaskState.CANCELLED
                elif call.due_at is not None and call.due_at > time.time():
                    state = TaskState.SCHEDULED
                return TaskInfo(
                    id=call.id,
                    name=call.name,
                    state=state,
                    lane=self.name,
                    created_at=self._submitted_at.get(call.id),
                    error="cancelled by request" if cancelled else None,
                    due_at=call.due_at,
                )
        return None

    async def cancel(self, task_id: str) -> bool:
        """Mark a recorded, not yet cancelled id `cancelled`; `False` for any other."""
        if task_id in self.cancelled or all(call.id != task_id for call in self.calls):
            return False
        self.cancelled.append(task_id)
        return True

    @property
    def names(self) -> list[str]:
        """The registered names of the recorded calls, in submission order."""
        return [call.name for call in self.calls]

    def calls_to(self, func: Callable[..., Any] | str) -> list[TaskCall]:
        """The recorded calls of `func` (a function or its `module.qualname`)."""
        name = func if isinstance(func, str) else task_name(func)
        return [call for call in self.calls if call.name == name]

    def clear(self) -> None:
        """Forget every recorded call."""
        self.calls.clear()
        self._submitted_at.clear()
