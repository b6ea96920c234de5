"""Worker side: how a registered callable is run and what is kept of its return value."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["portable_result", "run_callable"]

logger = logging.getLogger("fastapi_offload.worker")


def run_callable(func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Call `func`; an `async def` task runs to completion in a fresh event loop.

    Neither Celery's nor RQ's worker runs an event loop of its own, and a task must
    not share one with anything else, so each async call gets its own `asyncio.run`
    (the same choice RQ makes in `Job._execute`).
    """
    result = func(*args, **dict(kwargs))
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def portable_result(name: str, value: Any, serializer: str) -> Any:
    """`value` if the result store can hold it, else `None` (with a warning).

    Return values are not part of fastapi-offload's status API; they are kept only
    for users who read them through Celery or RQ. A value that does not serialize
    must not turn a task that ran successfully into a failure.
    """
    if value is None or serializer != "json":
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        logger.warning(
            "the return value of %s (a %s) is not JSON-serializable and was not stored; "
            "return JSON values from tasks if you need them",
            name,
            type(value).__qualname__,
        )
        return None
    return value
