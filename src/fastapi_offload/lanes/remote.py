"""The remote lane: tasks a remote backend (Celery, RQ, one of yours) runs.

Like the local lanes it takes admitted records and reports their outcome, but what
it does with a record is send it: checked in the request (`prepare`), sent before the
response (`send_all`, or `send_late` for a task added after it), then owned by the
backend, which answers for its status and, where it can, cancels it. What a backend
can do besides the `Backend` protocol is read once, from its declared capabilities.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import time
from collections.abc import Sequence
from typing import Protocol

from .._errors import BackendUnavailable, NotOffloadable
from .._models import TaskInfo, TaskState
from .._record import TaskRecord
from ..backends.base import Backend, capabilities_of

__all__ = ["Outcomes", "RemoteLane"]


class Outcomes(Protocol):
    """Where the lane reports what became of a record (the ledger)."""

    def handed_off(self, record: TaskRecord) -> None: ...

    def failed(self, record: TaskRecord, error: BaseException | str) -> None: ...

    def discarded(self, record: TaskRecord) -> None: ...


class RemoteLane:
    """Sends records to one backend; `name` is the backend's (a task's `lane`)."""

    def __init__(self, backend: Backend, outcomes: Outcomes) -> None:
        self.backend = backend
        self.name = backend.name
        self.capabilities = capabilities_of(backend)
        self._outcomes = outcomes

    def prepare(self, record: TaskRecord) -> None:
        """In the request: check the call can travel, or raise `NotOffloadable`."""
        if not inspect.isfunction(record.func):
            # Only a name and JSON arguments reach the worker: whatever a partial, a bound
            # method or a callable object carries would be silently lost.
            raise NotOffloadable(
                f"cannot send {record.name} to the {self.name} backend: it is a "
                f"{type(record.func).__name__}, not a module-level function, and a worker "
                "receives only a registered function's name and its arguments. Pass a "
                "plain function and put what it needs in its arguments."
            )
        if record.due_at is not None and not self.capabilities.delays:
            raise NotOffloadable(
                f"cannot send {record.name} to the {self.name} backend with delay=/at=: "
                "that backend does not declare that it holds a call until its due time "
                "(`delays = True`), so it would run the task at once. Run it on a local "
                'lane (tasks.options(lane="thread", delay=...)), or use a backend that '
                "schedules calls (celery, rq)"
            )
        self.backend.prepare(record.task_call())
        record.lane = self.name

    async def send_all(self, records: Sequence[TaskRecord]) -> None:
        """Before the response: send a request's remote tasks, one at a time. A remote
        task was checked when it was admitted, so a failure here is the broker's; if
        it fails part-way, the error names the tasks accepted and those not sent."""
        for index, record in enumerate(records):
            try:
                await self.send(record)
            except BaseException as exc:  # noqa: PERF203 - one at a time: stop at the first failure
                for unsent in records[index:]:
                    if not unsent.sending:  # one being sent settles when its send ends
                        self._outcomes.discarded(unsent)
                if index == 0 or not isinstance(exc, BackendUnavailable):
                    raise
                raise BackendUnavailable.partial(exc, records[:index], records[index:]) from exc

    async def send(self, record: TaskRecord) -> None:
        # Its own task, shielded from the caller: once the broker may have the task, a
        # cancelled request or a forced shutdown (a plain `task.cancel()`, which an
        # anyio shield does not stop) must not make it look unsent. The backend bounds
        # the send with its broker timeout.
        sending = asyncio.get_running_loop().create_task(
            self.backend.submit(record.task_call()), name=f"offload:send:{record.name}"
        )
        try:
            await asyncio.shield(sending)
        except asyncio.CancelledError:
            record.sending = True  # settled by `_sent` when the send ends
            sending.add_done_callback(functools.partial(self._sent, record))
            raise
        self._outcomes.handed_off(record)

    async def send_late(self, record: TaskRecord) -> None:
        """A task added after the response (a yield dependency's teardown, a websocket):
        no client can hear a 503 any more, so a failure is the task's."""
        try:
            await self.send(record)
        except Exception as exc:
            self._outcomes.failed(record, f"could not be sent to the backend: {exc}")

    def _sent(self, record: TaskRecord, sending: asyncio.Task[None]) -> None:
        if sending.cancelled():
            self._outcomes.failed(
                record, "could not be sent to the backend: the send was cancelled"
            )
        elif (error := sending.exception()) is not None:
            self._outcomes.failed(record, f"could not be sent to the backend: {error}")
        else:
            self._outcomes.handed_off(record)

    async def cancel(self, task_id: str) -> bool:
        """Ask the backend to cancel; `False` when it cannot cancel at all."""
        cancel = self.capabilities.cancel
        return cancel is not None and bool(await cancel(task_id))

    async def workers(self) -> int | None:
        """How many workers consume the backend's queue, when it can say."""
        ask = self.capabilities.workers
        return None if ask is None else await ask()

    async def status(self, task_id: str, kept: TaskInfo | None) -> TaskInfo | None:
        """The backend's status of a task, with what this process kept of it (`kept`,
        from the store) filling the gaps; `None` when the backend cannot vouch for it."""
        info = await self.backend.status(task_id)
        if info is None or kept is None:
            return info
        # Queues keep fewer timestamps (Celery has no start time): fill the gaps.
        due_at = info.due_at or kept.due_at
        state = info.state
        if state is TaskState.PENDING and due_at is not None and due_at > time.time():
            state = TaskState.SCHEDULED  # a backend that knows no such state: held till due
        return dataclasses.replace(
            info,
            name=info.name or kept.name,
            state=state,
            created_at=info.created_at or kept.created_at,
            owner=kept.owner,  # recorded here: a backend knows no owner
            due_at=due_at,
        )
