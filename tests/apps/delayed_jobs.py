"""Declared task functions for the delayed-task tests: with a durable store a delayed
call is saved, and only a declared function may be run from a saved call."""

from __future__ import annotations

import os
import time

from fastapi_offload import task


@task(lane="thread")
def stamp(path: str) -> None:
    """Append `<time> <pid>`: when (and in which process) it ran."""
    with open(path, "a") as file:
        file.write(f"{time.time()!r} {os.getpid()}\n")


@task
async def stamp_async(path: str) -> None:
    stamp(path)


@task(lane="thread", requeue=True)
def stamp_requeue(path: str) -> None:
    stamp(path)


def undeclared(path: str) -> None:
    stamp(path)


def stamps(path: object) -> list[tuple[float, int]]:
    """The `(time, pid)` of each run recorded in `path` (none if it does not exist)."""
    try:
        with open(str(path)) as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return []
    return [(float(at), int(pid)) for at, pid in (line.split() for line in lines)]


@task(lane="thread")
def stamp_then_wait(path: str, release: str) -> None:
    """`stamp`, then wait (up to 30 s) until `release` exists."""
    stamp(path)
    end = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < end:
        time.sleep(0.01)


@task(lane="thread", requeue=True)
def stamp_then_wait_requeue(path: str, release: str) -> None:
    stamp_then_wait(path, release)
