"""Delayed tasks (`options(delay=30)`, `options(at=...)`): `scheduled` until due, then
`pending`, and from there any task.

A scheduled task has its asyncio task from the start, as any other (so cancel-by-id,
`join` and the dashboard find it), sleeping until its due time: one timer each on the
event loop, no polling. It holds no lane slot and counts against no bound until it is
due (`Ledger.due`). With a durable store its call is saved with its row (`Requeue.save`),
so that when this process stops (killed, or shut down) the process that reclaims the row,
another one sharing the store or this app's next start, runs it when due
(`Requeue.adopt`); with the memory store it lives and dies with this process.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio

from .._errors import StoreUnavailable
from .._models import TaskState
from .._record import TaskRecord
from .ledger import Ledger

__all__ = ["MAX_NAP", "NOT_DUE", "put_off", "until_due"]

logger = logging.getLogger("fastapi_offload")

NOT_DUE = (
    "cancelled at shutdown before it was due: the memory store keeps scheduled tasks in "
    "this process only (a durable store, OFFLOAD_STORE, keeps them across restarts)"
)
# The longest a scheduled task sleeps before it looks at the wall clock again: a sleep
# runs on the monotonic clock, so a wall clock set forward meanwhile makes a task late by
# at most this much, and a long delay costs one wake-up per this many seconds.
MAX_NAP = 300.0
RETRY_COMMIT = 1.0  # seconds between two flushes of a store that is down


async def until_due(ledger: Ledger, record: TaskRecord) -> None:
    """Sleep until `record` is due, then make it pending. Cancelled, it raises (the
    caller settles the record)."""
    due_at = record.due_at
    # One timer (not a poll): an Event would need a waker, and the clock is the waker.
    while due_at is not None and (wait := due_at - time.time()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(wait, MAX_NAP))
    ledger.due(record)
    if not record.requeue and ledger.store.durable:
        await _committed(ledger, record)


async def _committed(ledger: Ledger, record: TaskRecord) -> None:
    # A task that must not run twice starts once the store says that it is pending and
    # keeps no saved call: were this process killed before that commit, the process that
    # reclaims the row would find it scheduled, with its call, and run it too.
    warned = False
    while True:
        try:
            await ledger.store.flush()
            return
        except StoreUnavailable as exc:  # noqa: PERF203 - only while the store is down
            if not warned:
                logger.warning(
                    "task %s (id %s) is due, and starts once the task store has recorded "
                    "that (so that no other process runs it too): %s",
                    record.name,
                    record.id,
                    exc,
                )
                warned = True
            await anyio.sleep(RETRY_COMMIT)


def put_off(ledger: Ledger) -> int:
    """At shutdown: the tasks still scheduled (not due) stay in a durable store, leased
    to this process until the lease runs out, for the process that reclaims them to run
    when due; with the memory store they are cancelled (`NOT_DUE`). Says so in one log
    line, not one per task; returns how many there were."""
    durable, count = ledger.store.durable, 0
    for record in ledger.live():
        if record.state is not TaskState.SCHEDULED:
            continue
        if durable:
            if not ledger.release(record):  # nothing is written: the row stays scheduled
                continue
        elif not ledger.cancelled(record, NOT_DUE, log=False):
            continue
        count += 1
        # Settled here: one whose request has not started it yet never starts
        # (`Runner._run` reads the reason first), and a sleeping one ends its sleep.
        record.cancel_reason = NOT_DUE
        if (task := record.task) is not None:
            task.cancel()
    if count and durable:
        logger.info(
            "shutdown: %d scheduled task(s) not due yet stay in the task store %r: the "
            "process that reclaims them (another one sharing the store, or this app's next "
            "start) runs each when due",
            count,
            ledger.store,
        )
    elif count:
        logger.warning(
            "shutdown: %d scheduled task(s) not due yet are cancelled: the memory store "
            "keeps them in this process only; a durable store (OFFLOAD_STORE=sqlite:///"
            "path/to/file.db or redis://...) keeps them across restarts",
            count,
        )
    return count
