"""Who hears of the ledger's transitions (metrics, the dashboard): the `Observer`
protocol, and telling them without letting one that breaks fail a transition."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from .._record import TaskRecord

__all__ = ["Observer", "tell"]

logger = logging.getLogger("fastapi_offload")


class Observer(Protocol):
    """Told of every transition (metrics, the dashboard), under the ledger's lock, from
    the loop or a sync endpoint's thread: it must be quick and must not raise.

    `event` is `admitted`, `rejected` (its lane was full: `QueueFull`), `due` (a
    scheduled task's time came: pending now), `started` (an attempt), `retrying`,
    `finished` (the record's state says how), `handed_off`, or `discarded` (admitted,
    then given up: its request failed before the response). An observer ignores an
    event it does not know: more may come.
    """

    def observe(self, event: str, record: TaskRecord) -> None: ...


def tell(observers: Iterable[Observer], event: str, record: TaskRecord) -> None:
    for observer in observers:
        try:
            observer.observe(event, record)
        except Exception:  # noqa: PERF203 - a broken observer must not fail a transition
            logger.exception("observer %r failed on %s of task %s", observer, event, record.id)
