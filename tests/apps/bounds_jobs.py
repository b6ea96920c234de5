"""Tasks for the bounds tests (importable by process workers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def raise_big(size: int) -> None:
    raise ValueError("x" * size)


def raise_secret() -> None:
    raise ConnectionError("could not reach postgres://app:S3cr3tPW@db/prod: refused")


def large_result(rows: int) -> list[list[int]]:
    # ~2 kB of JSON per row, the same inner list each time: the value is small in
    # memory, its whole text is `rows` * 2 kB.
    return [[1] * 1000] * rows


def sleep_then_write(seconds: float, path: str, pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    Path(path).write_text("written after the server died")


def child_in_new_session(pid_file: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    Path(pid_file).write_text(str(child.pid))
    time.sleep(60)


async def raise_secret_async() -> None:
    raise ConnectionError("could not reach postgres://app:S3cr3tPW@db/prod: refused")
