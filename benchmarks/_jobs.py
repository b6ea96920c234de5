"""The work the benchmarks offload. Module-level, so worker processes can import it by name.

Kept free of FastAPI and Celery imports: every process-lane worker imports this module,
and a heavy import here would show up as the strategy's cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def crunch(iterations: int) -> int:
    """Pure-Python CPU work that holds the GIL the whole time (no C loop releases it)."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


async def crunch_on_loop(iterations: int) -> int:
    # An `async def` task that forgets it does CPU work: this is the mistake the
    # package exists for, so the benchmark makes it on purpose.
    return crunch(iterations)


def calibrate(seconds: float, work: Callable[[int], Any] = crunch) -> int:
    """Iterations of `work` (a loop like `crunch`) taking about `seconds` on this machine."""
    probe = 200_000
    best = float("inf")
    # Best of three: the machine is shared, and the slowest sample measures the neighbours.
    for _ in range(3):
        started = time.perf_counter()
        work(probe)
        best = min(best, time.perf_counter() - started)
    return max(1, round(probe * seconds / best))


def block(seconds: float) -> None:
    """Blocking I/O stand-in: a sync call that waits without using the CPU."""
    time.sleep(seconds)


def noop() -> None:
    return None


async def noop_on_loop() -> None:
    return None


def measure(data: bytes) -> int:
    # Takes a large argument and returns a small result, so the cost measured is the
    # argument's trip to the worker, not a second trip back.
    return len(data)
