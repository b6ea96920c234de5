"""A task's row as the durable stores keep it, and the one codec between a row and what
each store writes.

SQLite's columns and Redis's hash fields have the same names (`COLUMNS`) and carry the
same values: SQLite as typed columns, Redis as text (a `None` is an absent field, a
flag is `1` or `0`, a float is its `repr`, so times read back exactly). Fields added
after a store's first layout (`result`, `progress`, `progress_message`, `task_owner`,
`ran_by`, `task_key`, `due_at`) read as `None` from rows written before them.

Everything read back may have been written by someone else: `info_of` checks each value
and raises `ValueError` for what the stores never write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from .._models import TaskInfo, TaskState
from .._record import TaskRecord
from .base import Orphan

__all__ = [
    "CLAIM",
    "COLUMNS",
    "FIELDS_JSON",
    "INFO",
    "Row",
    "from_redis",
    "info_of",
    "leased",
    "orphan_of",
    "redis_rows",
    "row_info",
    "row_of",
]


class Row(NamedTuple):
    """What a store keeps of a task: one write of it (a tuple, so SQLite binds it as is)."""

    id: str
    name: str
    lane: str
    state: str  # a TaskState (a str)
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    attempts: int
    error: str | None
    owner: str | None  # the process that leases the row; None once settled
    lease_until: float | None
    handed_off: bool
    requeue: bool
    payload: bytes | None  # the saved call, on a live requeue-able or scheduled row only
    timeout: float | None
    retries: int
    retry_delay: float
    settled_at: float | None  # when it stopped being live here: the pruning order
    result: str | None  # JSON text
    progress: float | None
    progress_message: str | None
    task_owner: str | None  # who started the task (`options(owner=...)`)
    ran_by: str | None  # the process that ran it, kept once settled (the dashboard's)
    task_key: str | None  # `options(key=...)`: the idempotency key it holds
    due_at: float | None  # `options(delay=/at=)`: when a scheduled task may start


COLUMNS: tuple[str, ...] = Row._fields
# What a status read needs (a `TaskInfo`), and what a reclaim needs besides to run a task
# again: the columns SQLite selects, the fields Redis decodes.
INFO = (
    "id", "name", "state", "lane", "created_at", "started_at", "finished_at", "attempts",
    "error", "result", "progress", "progress_message", "task_owner", "due_at",
)  # fmt: skip
CLAIM = (
    "owner", "lease_until", "requeue", "payload", "timeout", "retries", "retry_delay", "task_key",
)  # fmt: skip
_TEXTS = ("error", "result", "progress_message", "task_owner")  # `task_key`: not read
_NUMBERS = ("created_at", "started_at", "finished_at", "progress", "due_at")


def row_of(record: TaskRecord, owner: str, lease: float, now: float) -> Row:
    """What `record` says now, written by `owner`: a live row leased to it until
    `now + lease`, a settled one (finished, handed off) leased to nobody."""
    live = record.live
    # `tuple.__new__` rather than `Row(...)`, whose generated `__new__` is Python code:
    # half the cost, and this runs on the loop for every transition of every task.
    return _new_row(Row, (
        record.id, record.name, record.lane, record.state, record.created_at,
        record.started_at, record.finished_at, record.attempts, record.error,
        owner if live else None, now + lease if live else None, record.handed_off,
        record.requeue, record.payload if live else None, record.timeout, record.retries,
        record.retry_delay, None if live else now, record.result, record.progress,
        record.progress_message, record.owner, owner, record.key, record.due_at,
    ))  # fmt: skip


def row_info(row: Row) -> TaskInfo:
    """The status one of this process's own rows says (`BatchedStore` answers with it for
    its own tasks, without a query): read as any row is, by `info_of`."""
    return info_of(row._asdict())


def leased(row: Row, until: float) -> Row:
    """`row` leased until `until` (for each live row of every batch: no `_replace`,
    which is generic Python code, three times the cost)."""
    return _new_row(Row, (*row[:_LEASE], until, *row[_LEASE + 1 :]))


_new_row = tuple.__new__


def info_of(values: Mapping[str, Any]) -> TaskInfo:
    """The `INFO` values of a row (a field missing: `None`) as a `TaskInfo`; `ValueError`
    if one holds what the stores never write (a result that is not JSON text among them)."""
    get = values.get
    name, lane, attempts = get("name"), get("lane"), get("attempts")
    numbers_ok = all(isinstance(get(n), float | int | None) for n in _NUMBERS)
    texts_ok = all(isinstance(get(t), str | None) for t in _TEXTS)
    if not (numbers_ok and texts_ok and isinstance(name, str) and isinstance(lane, str)):
        raise ValueError(f"a field has an unexpected type: {dict(values)!r:.300}")
    if type(attempts) is not int:
        raise ValueError(f"a field has an unexpected type: {dict(values)!r:.300}")
    result = get("result")
    return TaskInfo(
        values["id"], name, TaskState(get("state")), lane, get("created_at"),
        get("started_at"), get("finished_at"), attempts, get("error"),
        result=None if result is None else json.loads(result),  # JSONDecodeError: ValueError
        progress=get("progress"), progress_message=get("progress_message"),
        owner=get("task_owner"), due_at=get("due_at"),
    )  # fmt: skip


def orphan_of(info: TaskInfo, values: Mapping[str, Any]) -> Orphan:
    """A reclaimed task with a saved call (its `CLAIM` values in `values`): requeue-able,
    to be run again (pending), or scheduled, to be run when due (it stays scheduled)."""
    retry_delay, key = values.get("retry_delay"), values.get("task_key")
    scheduled = info.state is TaskState.SCHEDULED
    return Orphan(
        info if scheduled else replace(info, state=TaskState.PENDING),
        True,
        values["payload"],
        values.get("timeout"),
        values.get("retries") or 0,
        1.0 if retry_delay is None else retry_delay,
        key if isinstance(key, str) else None,
    )


# -- Redis: text fields --------------------------------------------------------------


def _text(value: Any) -> str:
    """A value as a hash field holds it (what redis-py would send for it)."""
    if isinstance(value, str):  # a TaskState too: its value
        return value.value if isinstance(value, TaskState) else value
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(value)  # a float with every digit; an int as its digits


_PAYLOAD, _LEASE = COLUMNS.index("payload"), COLUMNS.index("lease_until")
# The field names, sent with every upsert: the script writes what this module says.
FIELDS_JSON = json.dumps(COLUMNS[1:])


def redis_rows(rows: list[Row]) -> list[Any]:
    """The upsert script's arguments for `rows`: the JSON of the rows, each
    `[id, lease_until ('' if settled), settled_at (the score), then the fields of
    `COLUMNS[1:]`, null if None]`, then the saved calls (bytes, which JSON cannot carry):
    a row's `payload` field is the position of its own among these, from 1."""
    payloads: list[bytes] = []
    encoded = []
    for row in rows:
        if (payload := row.payload) is not None:
            payloads.append(payload)
            row = row._replace(payload=len(payloads))  # type: ignore[arg-type]  # its position
        # Most fields are None or plain text: those need no call (this runs per field).
        values: list[Any] = [v if v is None or type(v) is str else _text(v) for v in row]
        if payload is not None:
            values[_PAYLOAD] = len(payloads)  # a JSON number
        lease, settled = values[_LEASE], row.settled_at
        encoded.append([row.id, lease or "", repr(settled or 0.0), *values[1:]])
    return [json.dumps(encoded, ensure_ascii=False), *payloads]


_DECODE: dict[str, Callable[[bytes], Any]] = {
    **{name: bytes.decode for name in COLUMNS},
    **{n: float for n in (*_NUMBERS, "lease_until", "timeout", "retry_delay", "settled_at")},
    "attempts": int,
    "retries": int,
    "handed_off": lambda value: value == b"1",
    "requeue": lambda value: value == b"1",
    "payload": bytes,
}
_FIELD_NAMES = {name.encode(): name for name in COLUMNS}


def from_redis(task_id: str, fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """A task's hash as typed values by field name (fields this package does not write
    are left out); `ValueError` if a number or a text does not parse."""
    values: dict[str, Any] = {"id": task_id}
    for raw, value in fields.items():
        if (name := _FIELD_NAMES.get(raw)) is not None and name != "id":
            values[name] = _DECODE[name](value)
    return values
