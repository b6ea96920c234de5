"""Idempotency keys, the runtime's side: `tasks.options(key=...).add_task(...)` claims the
key in the store before the task is admitted, and a key some task still holds answers
with that task's handle (`existing=True`) instead of starting another.

The store decides, atomically across the processes sharing it (`Store.claim_key`; when a
key is held: `stores.keys`). A task that is never accepted frees its key: its lane was
full (here), or its request failed before the response (`Ledger.discarded`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from .._errors import KeyConflict, StoreUnavailable
from .._models import TaskHandle
from .._record import TaskRecord
from ..stores.keys import KeyHolder
from .ledger import Ledger

__all__ = ["admit", "discard"]


def admit(ledger: Ledger, record: TaskRecord, key: str) -> TaskRecord | TaskHandle:
    """Take `key` for the new task `record` and admit it (`record`), or return the handle
    of the task holding the key, admitting nothing. Raises `KeyConflict` when that task
    runs another function, `StoreUnavailable` when the store cannot answer within
    `store_timeout`, and what `Ledger.admit` raises (the key is freed then)."""
    store = ledger.store
    holder = store.claim_key(key, KeyHolder(record.id, record.name, record.lane))
    if holder is not None:
        if holder.name != record.name:
            raise KeyConflict(key, holder.name, holder.task_id, record.name)
        return TaskHandle(holder.task_id, holder.name, holder.lane, existing=True)
    try:
        ledger.admit(record)  # QueueFull when its lane is full: the key goes back
    except BaseException:
        store.release_key(key, record.id)
        raise
    return record


async def discard(ledger: Ledger, records: Sequence[TaskRecord]) -> None:
    """The request failed before its response: discard its tasks, and return once a durable
    store has freed their keys, so that the client's retry finds them free. A store that
    cannot answer leaves the request's own error as it was (the keys are freed later)."""
    for record in records:
        ledger.discarded(record)
    if ledger.store.durable and any(record.key is not None for record in records):
        with contextlib.suppress(StoreUnavailable):
            await ledger.store.flush()
