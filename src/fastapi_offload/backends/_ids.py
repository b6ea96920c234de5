"""The shape of the task ids fastapi-offload makes, checked before a broker is asked."""

from __future__ import annotations

import re

__all__ = ["is_task_id"]

# What `IdSource` (fastapi_offload.core.ids) makes: 32 lowercase hex digits (the time in
# milliseconds, then 80 random bits). Spelled out rather than `\d` or `re.I`, which would
# let unicode digits and other spellings of the same id through.
_TASK_ID = re.compile(r"[0-9a-f]{32}")


def is_task_id(value: object) -> bool:
    """Whether `value` has the shape of a task id fastapi-offload makes.

    A remote backend answers an id of any other shape as unknown without asking its
    broker: the queues' own readings of odd ids differ (RQ refuses `a.b` with
    `ValueError` and reads `<id>:<anything>` as `<id>`; Celery refuses the empty id)
    and none of their records was written by this package.
    """
    return isinstance(value, str) and _TASK_ID.fullmatch(value) is not None
