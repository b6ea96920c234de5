"""A reclaim in a SQLite file: the live rows of other owners whose lease ran out or whose
process is gone from this host, and this owner's strays, each taken over (a saved call:
run again, or when due) or settled as `interrupted`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Container
from dataclasses import replace
from functools import partial
from typing import Any

from .._models import TaskInfo, TaskState
from .base import Orphan
from .lease_owner import OWNER_ID_MAX, gone_owners
from .rows import CLAIM, INFO, orphan_of
from .sqlite_schema import INTERRUPT, LEASING, ORPHANS, STRAYS, orphans_of
from .texts import interrupted_reason, utc_text

__all__ = ["owners_gone", "reclaim"]

#: A row's values as a `TaskInfo`, or None (with a warning) when they cannot be read.
Decode = Callable[[dict[str, Any]], TaskInfo | None]


def owners_gone(conn: sqlite3.Connection, now: float, owner: str) -> list[str]:
    """The other owners whose leases still run but whose process is gone from this host:
    their rows are reclaimed now, not when the lease runs out. Judged before the write
    lock (it reads /proc, not the file); a row an owner settled meanwhile is not live any
    more, and a reclaim does not select it."""
    leasing = conn.execute(LEASING, (now, owner, OWNER_ID_MAX)).fetchall()
    return gone_owners(found for (found,) in leasing if isinstance(found, str))


def reclaim(
    conn: sqlite3.Connection,
    now: float,
    *,
    owner: str,
    lease: float,
    gone: list[str],
    here: Container[str],
    decode: Decode,
) -> list[Orphan]:
    """Take over the rows to reclaim for `owner` (leased `lease` seconds from `now`), in
    the caller's `BEGIN IMMEDIATE` transaction: taken before the select, so two processes
    reclaiming at once never both see (and claim) the same row. `gone`: `owners_gone`;
    `here`: the tasks of this process, whose rows are not strays."""
    rows = conn.execute(ORPHANS, (now, owner)).fetchall()
    claimed = {row[0] for row in rows}
    if gone:
        found = conn.execute(orphans_of(len(gone)), gone).fetchall()
        rows += [row for row in found if row[0] not in claimed]
        claimed.update(row[0] for row in found)
    take = partial(_claim, conn, now=now, owner=owner, lease=lease, decode=decode)
    orphans = [take(row) for row in rows]
    strays = conn.execute(STRAYS, (owner,)).fetchall()
    orphans += [take(row) for row in strays if row[0] not in here and row[0] not in claimed]
    return [orphan for orphan in orphans if orphan is not None]


def _claim(
    conn: sqlite3.Connection,
    row: tuple[Any, ...],
    *,
    now: float,
    owner: str,
    lease: float,
    decode: Decode,
) -> Orphan | None:
    # The row holds the columns of `_CLAIMABLE`: those of a status, then what a reclaim needs.
    values = dict(zip((*INFO, *CLAIM), row, strict=True))
    if (info := decode(values)) is None:
        return None
    scheduled = info.state is TaskState.SCHEDULED  # never started: run when due
    if (values["requeue"] or scheduled) and values["payload"] is not None:
        conn.execute(
            "UPDATE tasks SET state = ?, owner = ?, lease_until = ? WHERE id = ?",
            ("scheduled" if scheduled else "pending", owner, now + lease, info.id),
        )
        return orphan_of(info, values)
    # A lease that still runs was taken from an owner found gone (see `owners_gone`).
    lease_until = values["lease_until"]
    ended = utc_text(lease_until) if lease_until < now else None
    reason = partial(interrupted_reason, values["owner"], ended, bool(values["requeue"]))
    error = reason(found_gone=utc_text(now))
    conn.execute(INTERRUPT, (now, now, error, info.id))
    return Orphan(replace(info, state=TaskState.INTERRUPTED, finished_at=now, error=error), False)
