"""Periodic tasks' ticks in the durable stores: the SQL of SQLite's `ticks` table, and
the check of what they read back (Redis's tick hashes and script: `stores.redis_ticks`).

A tick is claimed by a compare-and-set of the last tick per periodic task: every
process computes the same tick times, so the first to move a name's last tick forward
to a time runs that tick, and the others, finding it there, do not. A tick whose
previous task is still live is claimed without a task unless `overlap` (the overlap is
checked in the same transaction or script, against the stored task rows).
"""

from __future__ import annotations

import math
from typing import Any

from .._models import TaskState
from .base import Tick

__all__ = [
    "LAST_TICK",
    "LIVE_TASK",
    "RUN_TICK",
    "SKIP_TICK",
    "check_tick",
    "read_ticks",
]

# `{live}`: `sqlite_schema.LIVE`, formatted in by the store.
LAST_TICK = "SELECT tick, task_id FROM ticks WHERE name = ?"
LIVE_TASK = "SELECT 1 FROM tasks WHERE id = ? AND {live}"
SKIP_TICK = "UPDATE ticks SET tick = ?, claimed_at = ? WHERE name = ?"
RUN_TICK = (
    "INSERT INTO ticks (name, tick, task_id, task_tick, claimed_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(name) DO UPDATE SET tick = excluded.tick, task_id = excluded.task_id, "
    "task_tick = excluded.task_tick, claimed_at = excluded.claimed_at"
)


def read_ticks(names: int) -> str:
    """The last tick of `names` periodic tasks, with their last task's state and lane."""
    return (
        "SELECT ticks.name, ticks.tick, ticks.claimed_at, ticks.task_id, ticks.task_tick, "
        "tasks.state, tasks.lane FROM ticks LEFT JOIN tasks ON tasks.id = ticks.task_id "
        f"WHERE ticks.name IN ({', '.join('?' * names)})"
    )


_STATES = frozenset(state.value for state in TaskState)
_ID_MAX = 200  # as the status routes' bound on an id (`core.runtime.MAX_ID`)


def check_tick(name: str, values: tuple[Any, ...]) -> Tick:
    """A stored tick (`tick, claimed_at, task_id, task_tick, state, lane`) as a `Tick`;
    `ValueError` for what the stores never write (the store may be shared)."""
    tick, claimed_at, task_id, task_tick, state, lane = values
    for value in (tick, claimed_at):
        if not _time(value):
            raise ValueError(f"tick time {value!r:.40} is not a time")
    if task_tick is not None and not _time(task_tick):
        raise ValueError(f"tick time {task_tick!r:.40} is not a time")
    if task_id is not None and not (isinstance(task_id, str) and 0 < len(task_id) <= _ID_MAX):
        raise ValueError(f"task id {task_id!r:.40} is not an id")
    if state is not None and state not in _STATES:
        raise ValueError(f"state {state!r:.40} is not a task state")
    if lane is not None and not (isinstance(lane, str) and len(lane) <= _ID_MAX):
        raise ValueError(f"lane {lane!r:.40} is not a lane")
    return Tick(
        name,
        float(tick),
        float(claimed_at),
        task_id,
        None if task_tick is None else float(task_tick),
        state,
        lane,
    )


def _time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
