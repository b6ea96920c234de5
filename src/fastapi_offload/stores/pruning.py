"""When a durable store's batch also prunes finished rows (`PruneSchedule`).

Pruning (by count past `capacity`, and by age past `retention`) is a query or a script
of its own: run with every batch, it cost a SQLite batch three more statements and each
Redis batch a script, and every statement is a moment the writer thread gives up the GIL
and must win it back from the busy event loop. So a batch prunes when it deletes rows
or renews the lease (as before), or once this process settled a quota of rows since the
last prune (a quarter of the 5 % slack that pruning by count waits for anyway), or when
`PRUNE_EVERY` seconds passed and it settled any. The store then holds at most
`capacity` + slack + quota rows (plus one batch, and what other processes wrote since
they pruned), and a row past `retention` goes within `PRUNE_EVERY` of the next batch that
settles one. A small capacity (under 80) prunes with every batch that settles a row.
"""

from __future__ import annotations

from collections.abc import Sequence

from .rows import Row

__all__ = ["PRUNE_EVERY", "PruneSchedule"]

PRUNE_EVERY = 1.0  # seconds: at most this long between two prunes while rows settle


class PruneSchedule:
    """One store's pruning decisions; used by its writer thread only."""

    __slots__ = ("_last", "_quota", "_settled")

    def __init__(self, capacity: int) -> None:
        self._quota = max(1, capacity // 80)  # a quarter of the slack (capacity // 20)
        self._settled = 0  # rows settled by this process since the last prune
        self._last = 0.0  # when it last pruned (0: never, so the first batch prunes)

    def due_for(self, rows: Sequence[Row], now: float, *, deleted: bool, renew: bool) -> bool:
        """`due` for a batch that writes `rows` (a row with `settled_at` settles its task)."""
        settled = sum(row.settled_at is not None for row in rows)
        return self.due(settled, now, deleted=deleted, renew=renew)

    def due(self, settled: int, now: float, *, deleted: bool, renew: bool) -> bool:
        """Whether the batch being written, which settles `settled` rows, prunes; if so,
        the count starts again. (A failed batch's rows come again with the next one, and
        count again: an outage makes the next prune come sooner, never later.)"""
        self._settled += settled
        if not (deleted or renew or self._settled >= self._quota):
            if not self._settled or now - self._last < PRUNE_EVERY:
                return False
        self._settled, self._last = 0, now
        return True
