"""A task row as `RedisStore` keeps it: one hash, the fields of `_sqlite_schema.COLUMNS`
after the id. A `None` is an absent field, so a hash written before a field existed
(`result`, `progress`, `progress_message`, `task_owner`, `ran_by`) reads as it did: the
layout stays version 1.
"""

from __future__ import annotations

import json
from typing import Any

from .._models import TaskInfo, TaskState
from .batched import LEASE_UNTIL, SETTLED_AT
from .sqlite_schema import COLUMNS, Row

__all__ = ["FIELDS", "decode", "encode"]

FIELDS = [name.encode() for name in COLUMNS[1:]]


def encode(row: Row) -> list[Any]:
    """The upsert script's arguments for `row`: id, lease_until, settled_at, n, then the
    n fields that are not None."""
    pairs: list[Any] = []
    for name, value in zip(FIELDS, row[1:], strict=True):
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, TaskState):
            value = value.value
        elif isinstance(value, float):
            value = repr(value)  # every digit: times read back exactly
        pairs += (name, value)
    lease, settled = row[LEASE_UNTIL], row[SETTLED_AT]
    return [
        row[0],
        "" if lease is None else repr(lease),
        repr(settled or 0.0),
        len(pairs) // 2,
        *pairs,
    ]


def decode(task_id: str, row: dict[bytes, bytes]) -> TaskInfo:
    """A hash as a `TaskInfo`; `KeyError` or `ValueError` if it is not one this store
    writes (a field missing, a number or a result that does not parse)."""

    def text(name: str) -> str | None:
        return None if (value := row.get(name.encode())) is None else value.decode()

    def number(name: str) -> float | None:
        return None if (value := text(name)) is None else float(value)

    name, lane, state, attempts = (row[f].decode() for f in [*FIELDS[:3], b"attempts"])
    result = text("result")
    return TaskInfo(
        task_id, name, TaskState(state), lane, number("created_at"), number("started_at"),
        number("finished_at"), int(attempts), text("error"),
        result=None if result is None else json.loads(result),  # JSONDecodeError: ValueError
        progress=number("progress"), progress_message=text("progress_message"),
        owner=text("task_owner"),
    )  # fmt: skip
