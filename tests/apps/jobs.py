"""Task functions used by the tests. Module-level, so process workers can import them."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from fastapi_offload import cpu_bound, io_bound, task

logger = logging.getLogger("tests.jobs")


def burn(seconds: float) -> int:
    """Pure-Python CPU work for about `seconds`: holds the GIL the whole time."""
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        count += sum(range(200))
    return count


def crunch(rounds: int) -> int:
    """A fixed amount of pure-Python CPU work, however busy the machine is
    (160_000 rounds: about 0.12 s of CPU on the 2-core CI machine)."""
    total = 0
    for _ in range(rounds):
        total += sum(range(200))
    return total


@cpu_bound
def burn_in_process(seconds: float) -> int:
    return burn(seconds)


@io_bound
def nap(seconds: float) -> None:
    time.sleep(seconds)


def write(path: str, text: str, *, suffix: str = "") -> None:
    """Append a line to `path` (the way tests see that a task ran, and where)."""
    with open(path, "a") as file:
        file.write(f"{text}{suffix} {os.getpid()}\n")


@cpu_bound
def write_in_process(path: str, text: str, *, suffix: str = "") -> None:
    logger.warning("writing %s from the worker", text)
    write(path, text, suffix=suffix)


@cpu_bound
def die() -> None:
    os._exit(13)


@cpu_bound
def hang(seconds: float, pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)


def fail(message: str) -> None:
    raise ValueError(message)


@cpu_bound
def fail_in_process(message: str) -> None:
    raise ValueError(message)


class Flaky:
    """Fails until it has been called `failures` times (state in a file, for processes)."""

    def __init__(self, path: str, failures: int) -> None:
        self.path = path
        self.failures = failures

    def __call__(self) -> None:
        calls = len(Path(self.path).read_text().splitlines()) if Path(self.path).exists() else 0
        write(self.path, "call")
        if calls < self.failures:
            raise RuntimeError(f"flaky failure {calls + 1}")


async def block_loop(seconds: float) -> None:
    """An async task that wrongly blocks the event loop."""
    time.sleep(seconds)  # noqa: ASYNC251 - the mistake the monitor must catch


async def async_write(path: str, text: str) -> None:
    write(path, text)


async def async_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


def sleep_then_write(seconds: float, path: str) -> None:
    time.sleep(seconds)
    write(path, "finished")


@cpu_bound
def report_nice(path: str) -> None:
    Path(path).write_text(str(os.nice(0)))


def exit_interpreter() -> None:
    raise SystemExit(3)


def log_noise(count: int) -> None:
    """Logs from a plain `anyio.to_process` call: not ours to carry back."""
    for _ in range(count):
        logger.warning("noise from someone else's to_process call")


@task(lane="thread", requeue=True)
def sleep_then_append(seconds: float, path: str) -> None:
    """Declared safe to run again: a durable store re-runs it after a crash."""
    time.sleep(seconds)
    with open(path, "a") as file:
        file.write(f"{os.getpid()}\n")


@task(requeue=True)
def append_then_sleep(seconds: float, path: str) -> None:
    """Declared safe to run again; writes when it starts (so a test sees every start)."""
    with open(path, "a") as file:
        file.write(f"{os.getpid()}\n")
    time.sleep(seconds)


@task(requeue=True)
def append_then_crash(path: str) -> None:
    """Declared safe to run again, and takes its process down as it starts (a crash in a
    C extension, say): every start is one line, then the process is gone at once."""
    with open(path, "a") as file:
        file.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)
