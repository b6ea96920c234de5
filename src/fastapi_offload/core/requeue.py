"""Saved calls in a durable store: those of `requeue=True` tasks, saved when they are
admitted and taken on again, from that saved call, by the process that reclaims them after
their own process died; and those of delayed tasks (`options(delay=/at=)`), saved when
they are admitted and run when due by whichever process holds them then (this one, or
the one that reclaimed them after this one stopped)."""

from __future__ import annotations

import time
from collections.abc import Callable

from .._models import TaskState
from .._record import TaskRecord
from .._saved_call import SavedCalls, Untrusted
from ..stores.base import Orphan
from .ledger import Ledger

__all__ = ["Requeue"]


class Requeue:
    """Saves and adopts the calls of one runtime's `requeue=True` and delayed tasks."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        # `None` until the store opens (`Lifecycle.open` sets the key beside it).
        self.calls = SavedCalls(None)

    def save(self, record: TaskRecord) -> None:
        """In the request: the signed call the store keeps with the task's row; raises
        `ConfigError` or `NotOffloadable` (saying what to do) when it cannot be saved."""
        record.payload = self.calls.dump(
            record.id,
            record.func,
            args=record.args,
            kwargs=record.kwargs,
            lane=record.lane,
            timeout=record.timeout,
            retries=record.retries,
            retry_delay=record.retry_delay,
            keep_result=record.keep_result,
            retry_backoff=record.retry_backoff,
            retry_on=record.retry_on,
            after=list(record.after),
            owner=record.owner,
            requeue=record.requeue,
            due_at=record.due_at,
        )

    def adopt(self, orphan: Orphan, is_local: Callable[[str], bool]) -> TaskRecord | None:
        """Take on a task whose process died (reclaimed from the store): a requeue-able
        one, to run again, or a scheduled one (never started), to run when due. The
        record to `start`, or `None` when it will not run (then it is settled:
        `interrupted` when its saved call is not one this app wrote, else `failed`)."""
        info = orphan.info
        scheduled = info.state is TaskState.SCHEDULED
        record = TaskRecord(
            id=info.id,
            name=info.name[:200],  # read back from the store: bounded before it is logged
            lane=info.lane,
            func=None,
            args=(),
            kwargs={},
            timeout=orphan.timeout,
            retries=orphan.retries,
            retry_delay=orphan.retry_delay,
            declared=True,
            created_at=info.created_at or time.time(),
            attempts=info.attempts,
            requeue=True,
            payload=orphan.payload,
            # Scheduled (the ledger's `adopt` keeps it so) or, to be run again, pending.
            state=TaskState.SCHEDULED if scheduled else TaskState.PENDING,
            key=orphan.key,  # its row keeps holding the key (`stores.keys`)
        )
        try:
            # Checked before anything runs or is unpickled: the row may have been planted.
            call = self.calls.load(info.id, orphan.payload, started=not scheduled)
            if not is_local(call.lane):
                raise Untrusted(f"its saved call names lane {call.lane[:40]!r}, not a local one")
        except Untrusted as exc:
            self._ledger.refused(record, f"not run{'' if scheduled else ' again'}: {exc}")
            return None
        record.func, record.args, record.kwargs = call.func, call.args, call.kwargs
        record.lane, record.timeout = call.lane, call.timeout
        record.retries, record.retry_delay = call.retries, call.retry_delay
        record.keep_result, record.retry_backoff = call.keep_result, call.retry_backoff
        record.retry_on, record.after, record.owner = call.retry_on, call.after, call.owner
        record.requeue = call.requeue
        if scheduled:
            # The signed due time, not the row's (which anyone who can write the store
            # could change); a row without one (an older writer) runs at once.
            record.due_at = call.due_at
        self._ledger.adopt(record)
        if record.attempts > record.retries + 1:
            # A task that takes its process down each time must not do so forever.
            self._ledger.failed(
                record,
                f"not run again: its process stopped during each of its {record.attempts} "
                "attempts (a requeue=True task is run again after a crash at most "
                "1 + retries times)",
            )
            return None
        return record
