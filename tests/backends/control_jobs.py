"""Tasks for kept results, progress, cancel and the retry policy on the remote workers.

Registered by both test workers next to `jobs`. Each leaves a trace the test can read:
a file written when it starts, or one line per attempt with the time it began.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi_offload import report_progress, task

_ERRORS: dict[str, type[Exception]] = {"KeyError": KeyError, "ValueError": ValueError}


@task
def echo(value: Any) -> Any:
    """Return `value` (JSON in, JSON out)."""
    return value


@task
def not_json() -> set[int]:
    """Return a set: it ran fine, but the value cannot be kept as JSON."""
    return {1, 2}


@task
def big(size: int) -> str:
    """Return a string of `size` characters (over the result limit when large)."""
    return "x" * size


@task
def progress_until(path: str, within: float = 20.0) -> str:
    """Report a quarter done, wait for `path` to appear, then report three quarters."""
    report_progress(0.25, "a quarter")
    deadline = time.monotonic() + within
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    report_progress(0.75, "three quarters")
    return "done"


@task
def mark_then_sleep(path: str, seconds: float) -> None:
    """Write `path` when it starts, then sleep (a task to cancel while it runs)."""
    Path(path).write_text(f"started {time.time()}\n")
    time.sleep(seconds)


@task
def attempt(path: str, kind: str, failures: int) -> int:
    """Append this attempt's start time to `path`; raise `kind` for the first `failures`
    attempts, then return the attempt number."""
    file = Path(path)
    done = len(file.read_text().splitlines()) if file.exists() else 0
    with file.open("a") as out:
        out.write(f"{time.time()}\n")
    if done < failures:
        raise _ERRORS[kind](f"attempt {done + 1} fails on purpose")
    return done + 1


@task
def raise_big(size: int) -> None:
    """Raise a `size`-character message, with a URL password in it."""
    raise ValueError("see postgres://app:S3cr3tPW@db/prod " + "x" * size)


@task
def stamp(path: str) -> None:
    """Append `<time> <pid>`: when, and in which process, it ran (delayed calls)."""
    import os

    with open(path, "a") as out:
        out.write(f"{time.time()!r} {os.getpid()}\n")
