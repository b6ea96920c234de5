"""The dashboard's periodic tasks (`@offload.every`, `@offload.cron`): each one's schedule,
last run (its tick, task id and state, from the store: every process sharing it) and
next run. A store that cannot be read leaves the last runs out and says why."""

from __future__ import annotations

import time
from typing import Any

from ..._errors import StoreUnavailable
from ...core.periodic import last_runs, schedule_info
from ...core.runtime import Runtime
from ...stores.base import Tick

__all__ = ["periodic_view"]


async def periodic_view(runtime: Runtime) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of the page's periodic tasks, and why their last runs are missing (or
    `None`). A remote backend is not asked: a run sent there is shown `sent`."""
    if not len(runtime.periodic):
        return [], None  # nothing to read: no query for an app without periodic tasks
    found: dict[str, Tick] = {}
    error = None
    try:
        found = await last_runs(runtime)
    except StoreUnavailable as exc:  # the page shows why (no password, no 503)
        error = f"the task store is unavailable: {exc.cause or exc}"
    except Exception as exc:  # the page must show the schedules, not fail
        error = str(exc) or repr(exc)
    now, rows = time.time(), []
    for task in runtime.periodic:
        last = found.get(task.name)
        row = schedule_info(task, last, now).to_dict()
        if row["last_state"] is not None and last is not None and last.lane is not None:
            if not runtime._local_lane(last.lane):
                row["last_state"] = "sent"  # the backend's now: as the task rows say
        rows.append(row)
    return rows, error
