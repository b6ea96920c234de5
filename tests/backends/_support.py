"""Helpers for the backend tests: building calls and waiting for a state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

import anyio

from fastapi_offload import TaskCall, TaskInfo, TaskState
from fastapi_offload.backends.base import Backend


def call_of(
    func: Callable[..., Any] | str,
    *args: Any,
    timeout: float | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    retry_backoff: bool = False,
    retry_on: tuple[str, ...] | None = None,
    **kwargs: Any,
) -> TaskCall:
    """A `TaskCall` as the core builds it: a fresh hex id and `module.qualname`."""
    name = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    return TaskCall(
        id=uuid.uuid4().hex,
        name=name,
        args=args,
        kwargs=kwargs,
        timeout=timeout,
        retries=retries,
        retry_delay=retry_delay,
        retry_backoff=retry_backoff,
        retry_on=retry_on,
    )


async def wait_for_state(
    backend: Backend,
    task_id: str,
    states: Collection[TaskState],
    within: float = 15.0,
    log: Callable[[], str] | None = None,
) -> TaskInfo:
    """Poll `backend.status` until the task is in one of `states`, for `within` seconds."""
    return await wait_for(
        backend, task_id, lambda info: info.state in states, f"in {set(states)}", within, log
    )


async def wait_for(
    backend: Backend,
    task_id: str,
    check: Callable[[TaskInfo], bool],
    what: str,
    within: float = 15.0,
    log: Callable[[], str] | None = None,
) -> TaskInfo:
    """Poll `backend.status` until `check` holds for the task's status, for `within` s."""
    deadline = time.monotonic() + within
    info: TaskInfo | None = None
    while time.monotonic() < deadline:
        info = await backend.status(task_id)
        if info is not None and check(info):
            return info
        await anyio.sleep(0.05)
    where = f"\nworker log:\n{log()}" if log else ""
    raise AssertionError(f"task {task_id} not {what} within {within} s: {info}{where}")
