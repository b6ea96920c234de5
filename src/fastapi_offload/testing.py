"""Test doubles for the remote backends, and pytest fixtures that provide them.

- `InlineBackend` runs each task at once, in the test process, during `submit`,
  after the same argument check and JSON round trip a real worker would apply.
- `RecordingBackend` runs nothing: it records each `TaskCall` for assertions, and
  can play a broker that is down.

Use them in code, `Offload(backend=RecordingBackend())`, or by configuration,
`OFFLOAD_BACKEND=inline` / `OFFLOAD_BACKEND=recording` (then `offload.backend` is
the instance). The fixtures `inline_backend` and `recording_backend` give a fresh
one per test; enable them in your `conftest.py` with::

    pytest_plugins = ["fastapi_offload.testing"]
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
import anyio.to_thread

from ._context import TaskContext, bound
from ._error_text import error_text
from ._errors import BackendUnavailable, TaskTimeout
from ._models import TaskCall, TaskInfo, TaskState
from ._remote_settings import check_serializer
from ._results import LIMIT, encode
from ._retry import type_names
from .backends._payload import Serializer, check_call
from .backends._registry import Target, TaskRegistry, UnregisteredTask, task_name
from .backends.base import BaseBackend

__all__ = ["InlineBackend", "RecordingBackend"]


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


class InlineBackend(BaseBackend):
    """Runs each submitted task to completion inside `submit`, in the test process.

    With `targets` (the same functions or modules your worker registers), a name
    outside them fails the task with `UnregisteredTask`, so a test catches a task
    the worker would refuse. Without targets, any importable task runs.

    Arguments go through a JSON round trip first (tuples arrive as lists), as on a
    real worker. `async def` tasks run on the test's event loop, under `timeout`;
    sync tasks run in a thread, one at a time, and their timeout is not enforced.
    Retries follow the policy every lane and worker follows (`retries`, `retry_on`),
    but happen at once: the wait the policy chose is kept in `waits` instead of
    slept. A delayed call (`options(delay=/at=)`) runs at once too (its due time is
    on the recorded `TaskCall.due_at`), for the same reason. The status holds the
    result when it is JSON (as the real backends keep it) and the task's last
    `report_progress`; `cancel` is always `False` (a task has ended when `submit`
    returns). A failing task is recorded as `failed`; with
    `raise_errors=True` its exception is raised from `submit` instead, which makes
    the request fail in the test and shows the traceback.
    """

    name = "inline"
    delays = True  # accepted, and run at once (see the class)

    def __init__(
        self, *targets: Target, serializer: Serializer = "json", raise_errors: bool = False
    ) -> None:
        self._registry = TaskRegistry(*targets) if targets else None
        self._serializer = check_serializer(serializer)
        self._raise_errors = raise_errors
        self._limiter = anyio.CapacityLimiter(1)
        self.calls: list[TaskCall] = []
        #: Return values of succeeded tasks and exceptions of failed ones, by task id.
        self.results: dict[str, Any] = {}
        self.errors: dict[str, BaseException] = {}
        #: The wait before each retry the policy chose (not slept), by task id.
        self.waits: dict[str, list[float]] = {}
        self._infos: dict[str, TaskInfo] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InlineBackend:
        """A fresh instance (no variable is read); used by `OFFLOAD_BACKEND=inline`."""
        return cls()

    def __repr__(self) -> str:
        return f"InlineBackend(calls={len(self.calls)}, failed={len(self.errors)})"

    def prepare(self, call: TaskCall) -> None:
        """Raise `NotOffloadable` as a real backend would."""
        check_call(call, backend=self.name, serializer=self._serializer)

    async def submit(self, call: TaskCall) -> None:
        """Run the task now; return when it has finished (or raise, see the class)."""
        self.calls.append(call)
        created = time.time()
        attempts = 0
        error: BaseException | None = None
        context = _InlineContext(call.id, call.name)
        policy = call.retry_policy()
        while True:
            attempts += 1
            started = time.time()
            self._record(call, TaskState.RUNNING, created, started, None, attempts, None)
            try:
                with bound(context):
                    self.results[call.id] = await self._run(call)
            except Exception as exc:
                error = exc
                # The policy every lane and worker follows decides; its wait is noted
                # (`waits`) but not slept: a test double that slept each retry's delay
                # would make the tests of an app with `retry_delay=5` crawl.
                wait = policy.next_wait(attempts, type_names(exc))
                if wait is None:
                    break
                self.waits.setdefault(call.id, []).append(wait)
                continue
            kept, note = encode(self.results[call.id], LIMIT)
            self._record(
                call, TaskState.SUCCEEDED, created, started, time.time(), attempts, None, note
            )
            self._infos[call.id] = dataclasses.replace(
                self._infos[call.id],
                result=None if kept is None else json.loads(kept),
                progress=context.fraction,
                progress_message=context.message,
            )
            return
        assert error is not None
        self.errors[call.id] = error
        self._record(call, TaskState.FAILED, created, started, time.time(), attempts, error)
        if self._raise_errors:
            raise error

    async def status(self, task_id: str) -> TaskInfo | None:
        """The recorded state of a task submitted here, else `None`."""
        return self._infos.get(task_id)

    def calls_to(self, func: Callable[..., Any] | str) -> list[TaskCall]:
        """The submitted calls of `func` (a function or its `module.qualname`)."""
        name = func if isinstance(func, str) else task_name(func)
        return [call for call in self.calls if call.name == name]

    async def _run(self, call: TaskCall) -> Any:
        func = self._resolve(call.name)
        travelled = json.loads(json.dumps([list(call.args), dict(call.kwargs)]))
        args, kwargs = travelled
        if inspect.iscoroutinefunction(func):
            try:
                with anyio.fail_after(call.timeout):
                    return await func(*args, **kwargs)
            except TimeoutError:
                raise TaskTimeout(
                    f"{call.name} ran longer than its timeout of {call.timeout} s and was stopped"
                ) from None
        result = await anyio.to_thread.run_sync(
            functools.partial(func, *args, **kwargs), limiter=self._limiter
        )
        if inspect.isawaitable(result):
            return await result
        return result

    def _resolve(self, name: str) -> Callable[..., Any]:
        if self._registry is not None:
            return self._registry.resolve(name)
        found = _import_by_name(name)
        if found is None:
            raise UnregisteredTask(
                f"{name} cannot be found by importing its name; define the task at module "
                "level in an importable module"
            )
        return found

    def _record(
        self,
        call: TaskCall,
        state: TaskState,
        created: float,
        started: float | None,
        finished: float | None,
        attempts: int,
        error: BaseException | None = None,
        note: str | None = None,
    ) -> None:
        self._infos[call.id] = TaskInfo(
            id=call.id,
            name=call.name,
            state=state,
            lane=self.name,
            created_at=created,
            started_at=started,
            finished_at=finished,
            attempts=attempts,
            error=error_text(error) if error is not None else note,
        )


class _InlineContext(TaskContext):
    """`report_progress` in an inline task: kept for the status at its end."""

    def publish(self, fraction: float, message: str | None) -> None:
        return None


def _import_by_name(name: str) -> Callable[..., Any] | None:
    # `module.qualname`: the module is the longest importable prefix.
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                target = getattr(target, attribute)
        except AttributeError:
            return None
        return target if callable(target) else None
    return None


try:
    import pytest
except ImportError:  # pragma: no cover - the doubles work without pytest
    pass
else:

    @pytest.fixture
    def recording_backend() -> Iterator[RecordingBackend]:
        """A fresh `RecordingBackend` for one test."""
        yield RecordingBackend()

    @pytest.fixture
    def inline_backend() -> Iterator[InlineBackend]:
        """A fresh `InlineBackend` (no registration check) for one test."""
        yield InlineBackend()
