"""Task functions for the results, progress, cancel and retry tests (module level, so the
process lane's workers can import them)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from fastapi_offload import cancelled, report_progress


def wait_for(path: str, limit: float = 30.0) -> None:
    """Sleep until `path` exists (how a test releases a task on any lane)."""
    end = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.01)


async def answer_async(value: Any) -> Any:
    await anyio.lowlevel.checkpoint()
    return value


def answer(value: Any) -> Any:
    return value


def not_json() -> object:
    return {1, 2, 3}


def nan() -> float:
    return math.nan


def sized(count: int) -> str:
    return "x" * count


def unpicklable() -> Any:
    return (x for x in range(3))  # a generator: neither JSON nor picklable


def report_then_wait(fraction: float, message: str | None, release: str) -> str:
    report_progress(fraction, message)
    wait_for(release)
    return "done"


async def report_then_wait_async(fraction: float, message: str | None, release: str) -> str:
    report_progress(fraction, message)
    while True:
        if await anyio.Path(release).exists():
            return "done"
        await anyio.sleep(0.01)


def report_many(count: int) -> int:
    for i in range(count):
        report_progress(i / count, "working")
    report_progress(1.0, "all done")
    return count


def report_steps(steps: int, pause: float) -> int:
    for step in range(1, steps + 1):
        time.sleep(pause)
        report_progress(step / steps, f"step {step} of {steps}")
    return steps


def report_bad(value: Any) -> None:
    report_progress(value)


def report_bad_message(message: Any) -> None:
    report_progress(0.5, message)


def sleep_until_cancelled(limit: float, path: str) -> str:
    """A cooperative thread task: checks `cancelled()` between steps."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cancelled():
            Path(path).write_text("stopped early")
            return "stopped"
        time.sleep(0.01)
    Path(path).write_text("ran out")
    return "finished"


def sleep_with_pid(seconds: float, pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)


async def sleep_async(seconds: float, path: str) -> None:
    try:
        await anyio.sleep(seconds)
    finally:
        # Sync on purpose: an await here, in a task being cancelled, would not run.
        Path(path).write_text("left")  # noqa: ASYNC240


def append(path: str, text: str) -> None:
    with open(path, "a") as file:
        file.write(text + "\n")


class Flaky(ConnectionError):
    pass


def fail_with(kind: str, path: str) -> None:
    """Count an attempt in `path`, then raise the named exception."""
    append(path, kind)
    errors: dict[str, type[Exception]] = {
        "flaky": Flaky,
        "value": ValueError,
        "os": OSError,
    }
    raise errors[kind](f"{kind} failure")


async def fail_with_async(kind: str, path: str) -> None:
    fail_with(kind, path)
