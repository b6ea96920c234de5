"""What the Celery and RQ backends share on the web side: the settings both take, checked
alike, and how they ask their broker about one task: off the event loop, in a worker
thread of the backend's own limiter, and not at all for an id fastapi-offload did not make.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import anyio
import anyio.to_thread

from .._errors import ConfigError
from .._remote_settings import check_max_bytes, check_serializer, check_timeout
from ._ids import is_task_id
from ._payload import Serializer

__all__ = ["ClientSettings", "by_task_id", "check_settings"]

T = TypeVar("T")
U = TypeVar("U")


class ClientSettings(NamedTuple):
    """The settings every queue backend takes, checked."""

    serializer: Serializer
    result_max_bytes: int
    timeout: float


def check_settings(
    *,
    serializer: Serializer,
    result_max_bytes: int,
    broker_timeout: float,
    queue: str,
    default_queue: str,
) -> ClientSettings:
    """Check the settings both backends take, in this order; raises `ConfigError` naming
    the keyword of the first bad one (`queue=''` is refused: leaving it unset gives
    `default_queue`)."""
    checked = ClientSettings(
        check_serializer(serializer),
        check_max_bytes(result_max_bytes, "result_max_bytes"),
        check_timeout(broker_timeout, "broker_timeout"),
    )
    if not queue:
        raise ConfigError(f"queue='' is not a queue name; leave it unset for {default_queue!r}")
    return checked


async def by_task_id(
    task_id: str, ask: Callable[[str], T], unknown: U, limiter: anyio.CapacityLimiter
) -> T | U:
    """`ask(task_id)`, a blocking client call, in a worker thread of `limiter`; `unknown`
    at once, without asking the broker, for an id fastapi-offload did not make (see
    `is_task_id`: the queues' own readings of odd ids differ)."""
    if not is_task_id(task_id):
        return unknown
    return await anyio.to_thread.run_sync(ask, task_id, limiter=limiter)
