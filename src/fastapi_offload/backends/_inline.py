"""`InlineBackend`, the test double that runs each task at once, in the test process,
during `submit`, after the same argument check and JSON round trip a real worker would
apply. Public as `fastapi_offload.testing`'s."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread

from .._context import TaskContext, bound
from .._error_text import error_text
from .._errors import TaskTimeout
from .._models import TaskCall, TaskInfo, TaskState
from .._remote_settings import check_serializer
from .._results import LIMIT, encode
from .._retry import type_names
from ._payload import Serializer, check_call
from ._registry import Target, TaskRegistry, UnregisteredTask, task_name
from .base import BaseBackend

__all__ = ["InlineBackend"]


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
