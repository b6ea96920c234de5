"""Texts the durable stores write and log: why a reclaimed task is `interrupted`, the
cause of an outage (URL passwords masked), a moment in UTC."""

from __future__ import annotations

import re
from datetime import datetime, timezone

__all__ = ["cause_of", "interrupted_reason", "mask_passwords", "utc_text"]

_PASSWORD = re.compile(r"(://[^:/@\s]*):[^@\s]*@")  # user:password@ in a URL


def interrupted_reason(
    owner: str, ran_out: str | None, requeue: bool, *, found_gone: str = ""
) -> str:
    """Why a reclaimed task is `interrupted`: `ran_out` is when its lease ran out (UTC),
    or None when it was reclaimed before, its process found gone at `found_gone` (UTC)."""
    because = "no copy of its call was saved" if requeue else "it is not declared "
    how = (
        f"its lease ran out at {ran_out} UTC"
        if ran_out is not None
        else f"its process no longer runs on this host (found at {found_gone} UTC)"
    )
    return (
        f"the process that ran it ({owner}) stopped before it finished: {how}; it was not "
        f"run again because {because}" + ("" if requeue else "@task(requeue=True)")
    )


def cause_of(exc: BaseException) -> str:
    """`exc` as the cause of an outage: its type and text, any URL password masked."""
    return f"{type(exc).__name__}: {mask_passwords(str(exc))}"


def mask_passwords(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`."""
    return _PASSWORD.sub(r"\1:***@", text)


def utc_text(moment: float) -> str:
    """`moment` (Unix seconds) as `YYYY-MM-DD HH:MM:SS`, in UTC."""
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
