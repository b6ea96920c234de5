"""A periodic task's tick claimed in a SQLite file: one `BEGIN IMMEDIATE` transaction,
the compare-and-set of `stores.ticks` (whose statements it runs)."""

from __future__ import annotations

import sqlite3
import time

from .base import TickClaim
from .sqlite_schema import LIVE, immediate
from .ticks import LAST_TICK, LIVE_TASK, RUN_TICK, SKIP_TICK

__all__ = ["claim_tick"]


def claim_tick(
    conn: sqlite3.Connection, name: str, tick: float, task_id: str, overlap: bool
) -> TickClaim:
    """See `Store.claim_tick`, on `conn` (a reader thread's connection)."""
    now = time.time()
    # IMMEDIATE: the write lock before the read, so two processes never both see
    # the old tick and both take the new one.
    with immediate(conn):
        last = conn.execute(LAST_TICK, (name,)).fetchone()
        if last is not None and last[0] >= tick:
            conn.execute("ROLLBACK")
            return TickClaim(False)
        previous = None if last is None else last[1]
        running = None
        if previous is not None and not overlap:
            if conn.execute(LIVE_TASK.format(live=LIVE), (previous,)).fetchone():
                running = str(previous)
        if running is not None:
            conn.execute(SKIP_TICK, (tick, now, name))
        else:
            conn.execute(RUN_TICK, (name, tick, task_id, tick, now))
    return TickClaim(True, running)
