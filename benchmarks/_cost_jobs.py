"""Task bodies for `progress_cost` and `results_cost`. Module-level, so process-lane
workers can import them by name (a benchmark run with `-m` is `__main__` there).

Kept free of FastAPI imports, like `_jobs`: a worker imports this before its first task.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi_offload import report_progress


def spin(n: int, work: int, report: bool) -> list[float]:
    """`n` iterations of `work` multiply-adds (`crunch`'s step), each followed by a
    `report_progress(i / n)` when `report`; returns [wall, CPU] seconds of the loop.

    CPU time is the thread's own: on a shared machine it does not count the time other
    processes held the core, which wall time does.
    """
    inv = 1.0 / n
    acc = 0
    wall, cpu = time.perf_counter(), time.thread_time()
    # Two copies of the loop rather than an `if` inside it: the branch would be part of
    # what the bare loop costs, and the report's cost is the difference.
    if report:
        for i in range(n):
            for j in range(work):
                acc += j * j % 7
            report_progress(i * inv)
    else:
        for i in range(n):
            for j in range(work):
                acc += j * j % 7
            _ = i * inv  # the fraction, computed alike in both loops
    return [time.perf_counter() - wall, time.thread_time() - cpu]


async def spin_on_loop(n: int, work: int, report: bool) -> list[float]:
    # The loop lane's version: the same synchronous loop inside a coroutine (it never
    # awaits, so the loop thread's CPU time is the task's).
    return spin(n, work, report)


def small_result(i: int) -> dict[str, Any]:
    """A small JSON-friendly result, the size of a typical job summary (68 bytes of JSON)."""
    return {"id": i, "status": "ok", "rows": 120, "elapsed": 0.25, "tags": ["a", "b"]}


async def small_result_on_loop(i: int) -> dict[str, Any]:
    return small_result(i)
