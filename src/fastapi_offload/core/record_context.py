"""`report_progress` and `cancelled()` of a task on the loop or thread lane: reports
reach the ledger, and a cancel request is read off the record."""

from __future__ import annotations

from .._context import TaskContext
from .._record import TaskRecord
from .ledger import Ledger

__all__ = ["RecordContext"]


class RecordContext(TaskContext):
    """`report_progress` and `cancelled` of a task on the loop or thread lane."""

    __slots__ = ("_ledger", "_record")

    def __init__(self, ledger: Ledger, record: TaskRecord) -> None:
        super().__init__(record.id, record.name)
        self._ledger, self._record = ledger, record

    def report(self, fraction: float, message: str | None) -> None:
        # Every report reaches the record (so the final write has the latest); the store
        # hears of one every INTERVAL at most.
        self._ledger.progress(self._record, fraction, message, self.due())

    def is_cancelled(self) -> bool:
        return self._record.cancel_reason is not None
