"""Tasks the backend tests' workers run. Each leaves a trace the test can read."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import anyio

from fastapi_offload import task


@task
def whoami(path: str) -> int:
    """Write the pid of the process running the task to `path`; return it."""
    Path(path).write_text(f"{os.getpid()}\n")
    return os.getpid()


@task
async def async_whoami(path: str) -> int:
    """The `async def` version: runs in the worker under `asyncio.run`."""
    await asyncio.sleep(0)
    await anyio.Path(path).write_text(f"{os.getpid()}\n")
    return os.getpid()


@task
def fail(message: str) -> None:
    """Always raises `ValueError(message)`."""
    raise ValueError(message)


@task
def flaky(path: str, failures: int) -> str:
    """Fail the first `failures` attempts (counted in `path`), then succeed."""
    file = Path(path)
    attempts = len(file.read_text().splitlines()) + 1 if file.exists() else 1
    with file.open("a") as out:
        out.write(f"attempt {attempts} pid {os.getpid()} at {time.time()}\n")
    if attempts <= failures:
        raise RuntimeError(f"attempt {attempts} fails on purpose")
    return f"succeeded on attempt {attempts}"


@task
def sleepy(seconds: float) -> None:
    """Sleep; used with a shorter timeout."""
    time.sleep(seconds)


def not_registered(path: str) -> None:
    """Not decorated and not listed: the workers must refuse it."""
    Path(path).write_text("ran\n")
