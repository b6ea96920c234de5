"""Texts the durable stores write, log and raise: why a reclaimed task is `interrupted`,
the cause of an outage (URL passwords masked) and the error it raises, a moment in UTC."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .._errors import StoreUnavailable

__all__ = ["RECORD", "cause_of", "interrupted_reason", "mask_passwords", "unavailable", "utc_text"]

RECORD = "record the task, so it was not accepted"  # what a failed flush could not do

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


def unavailable(doing: str, cause: str, *, shown: bool = False) -> StoreUnavailable:
    """The error of a store call that could not `doing` because of `cause`."""
    # What a client sees names neither the file nor the host (the log does, with the
    # breaker's line); the cause stays on the error for the dashboard and the caller.
    # `shown`: a cause of our own words (a timeout, a closed store), safe to show.
    why = f" ({cause})" if shown else ""
    error = StoreUnavailable(
        f"the task store is unavailable{why}, so the server could not {doing}. Retry "
        "in a moment; the server's log names the cause."
    )
    error.cause = cause
    return error
