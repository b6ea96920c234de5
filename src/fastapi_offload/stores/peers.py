"""What the processes sharing a durable store tell each other (`uvicorn --workers N`, or
several hosts on one Redis): each publishes its lane figures with its lease renewal, and
each task row names the process that ran it. The dashboard shows them all; the upkeep
warns when a host's process lanes outnumber its cores (`core.host_cores`).

Everything here is read back from a store that other processes (or whoever can write the
file or the Redis) write: it is JSON of a bounded size, checked field by field, never
unpickled, and a published entry that fails a check is skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .._models import OffloadStats, TaskState
from .lease_owner import process_label

__all__ = [
    "EXPIRY_LEASES",
    "FIGURES_MAX",
    "PROCESSES_MAX",
    "LaneFigures",
    "ProcessFigures",
    "StoredTask",
    "decode_figures",
    "figures_of",
    "label_of",
    "stored_task",
]

TEXT_MAX = 2000  # characters of an error read back for the dashboard
RESULT_MAX = 200  # characters of a result's JSON text, or of a progress message
FIGURES_MAX = 4096  # characters of one process's published JSON (~300 with three lanes)
PROCESSES_MAX = 64  # processes read back: a dashboard row each
LANES_MAX = 8
NAME_MAX = 200  # characters of a task's name, lane name, host or process label read back
# A process's figures outlive its last renewal by two leases (six missed renewals): a
# short store outage does not make live processes flicker off every dashboard, and a
# process that died is gone from them (and from the host's count) within two leases.
EXPIRY_LEASES = 2.0


@dataclass(frozen=True, slots=True)
class LaneFigures:
    """One lane of a process, as published: its size, and its tasks at that moment."""

    name: str
    capacity: int
    running: int
    waiting: int


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """What one process published with its last lease renewal."""

    host: str
    pid: int
    started_at: float
    at: float  # when it was published (the process's clock)
    lanes: tuple[LaneFigures, ...]
    here: bool = False  # read back by the process that published it

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"

    def lane(self, name: str) -> LaneFigures | None:
        return next((lane for lane in self.lanes if lane.name == name), None)

    def encode(self) -> str:
        return json.dumps(
            {
                "host": self.host,
                "pid": self.pid,
                "started_at": self.started_at,
                "at": self.at,
                "lanes": [[x.name, x.capacity, x.running, x.waiting] for x in self.lanes],
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True, slots=True)
class StoredTask:
    """A recent task as a shared store holds it, for the dashboard: its texts already cut
    by the store's query (an error, a result's JSON text, a progress message)."""

    id: str
    name: str
    state: str  # a `TaskState` value, or `sent` (handed to a remote backend)
    lane: str
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    attempts: int
    error: str | None
    result: str | None  # the start of the result's JSON text
    progress: float | None
    progress_message: str | None
    process: str | None  # host:pid of the process that ran it (None: an older row)
    here: bool = False  # run by the store's own owner (this runtime)


def figures_of(
    stats: OffloadStats, *, host: str, pid: int, started_at: float, at: float
) -> ProcessFigures:
    lanes = tuple(
        LaneFigures(name, lane.capacity, lane.running, lane.waiting)
        for name, lane in stats.lanes.items()
    )
    return ProcessFigures(host, pid, started_at, at, lanes)


def label_of(owner: object) -> str | None:
    """The host:pid of a store owner, or None if it is not one (`stores.lease_owner` owns the
    format of owner ids)."""
    label = process_label(owner)
    return None if label is None else label[:NAME_MAX]


def stored_task(row: tuple[Any, ...], owner: str) -> StoredTask:
    """A store's row for the dashboard (id, name, state, lane, created_at, started_at,
    finished_at, attempts, error, result text, progress, progress_message, ran_by,
    handed_off), read by the store of `owner`; `ValueError` if a column holds what the
    stores never write."""
    task_id, name, state, lane, created, started, finished, attempts = row[:8]
    error, result, progress, message, ran_by, handed_off = row[8:]
    state = TaskState(state).value  # ValueError for a state no store writes
    if handed_off:
        state = "sent"
    if type(attempts) is not int:
        raise ValueError(f"not a count: {str(attempts)[:40]!r}")
    return StoredTask(
        _text(task_id), _text(_cut(name, NAME_MAX)), state, _text(lane), _maybe(_moment, created),
        _maybe(_moment, started), _maybe(_moment, finished), attempts,
        _cut(error, TEXT_MAX), _cut(result, RESULT_MAX), _maybe(_moment, progress),
        _cut(message, RESULT_MAX), label_of(ran_by), ran_by == owner,
    )  # fmt: skip


def decode_figures(text: object, *, here: bool = False) -> ProcessFigures:
    """Published figures read back; `ValueError` for anything this package never writes
    (too long, not JSON, a field missing or of another type, a number out of range)."""
    if isinstance(text, bytes):
        text = text.decode()  # UnicodeDecodeError is a ValueError
    if not isinstance(text, str) or len(text) > FIGURES_MAX:
        raise ValueError("published figures too long, or not text")
    found = json.loads(text)
    if not isinstance(found, dict):
        raise ValueError("published figures are not a JSON object")
    lanes = found.get("lanes")
    if not isinstance(lanes, list) or len(lanes) > LANES_MAX:
        raise ValueError("published lanes are not a short list")
    return ProcessFigures(
        host=_text(found.get("host")),
        pid=_count(found.get("pid")),
        started_at=_moment(found.get("started_at")),
        at=_moment(found.get("at")),
        lanes=tuple(_lane(lane) for lane in lanes),
        here=here,
    )


def _lane(item: Any) -> LaneFigures:
    if not isinstance(item, list) or len(item) != 4:
        raise ValueError("a published lane is not [name, capacity, running, waiting]")
    return LaneFigures(_text(item[0]), _count(item[1]), _count(item[2]), _count(item[3]))


def _text(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= NAME_MAX:
        raise ValueError(f"not a short text: {str(value)[:40]!r}")
    return value


def _count(value: Any) -> int:
    # bool is an int: refused, as any number this package does not write.
    if type(value) is not int or not 0 <= value < 2**31:
        raise ValueError(f"not a count: {str(value)[:40]!r}")
    return value


def _moment(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"not a time: {str(value)[:40]!r}")
    return float(value)


def _maybe(check: Any, value: Any) -> Any:
    return None if value is None else check(value)


def _cut(text: Any, limit: int) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"not a text: {str(text)[:40]!r}")
    return text if len(text) <= limit else text[: limit - 1] + "…"
