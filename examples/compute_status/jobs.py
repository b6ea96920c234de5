"""The job: count primes by trial division, pure-Python CPU work that holds the GIL."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from fastapi_offload import cpu_bound, report_progress

STEPS = 100  # progress reports per count: enough for a smooth bar, few enough to be free


def is_prime(n: int) -> bool:
    return all(n % d for d in range(2, math.isqrt(n) + 1))


@cpu_bound(timeout=600, keep_result=True)
def count_primes(below: int) -> dict[str, Any]:
    """Count the primes below `below`, reporting progress as it goes.

    The returned dict is kept as the task's result (`keep_result=True`): the app and
    its clients read it from the task's status, no file or database needed.
    """
    started = time.process_time()
    total = below - 2  # the numbers 2 .. below - 1
    chunk = max(1_000, total // STEPS)
    count = 0
    for start in range(2, below, chunk):
        stop = min(start + chunk, below)
        count += sum(1 for n in range(start, stop) if is_prime(n))
        # Once per chunk, not per number: each report is cheap, but not free.
        report_progress((stop - 2) / total, f"{stop - 2:,} of {total:,} numbers checked")
    return {
        "below": below,
        "primes": count,
        "cpu_seconds": round(time.process_time() - started, 3),
        "worker_pid": os.getpid(),
    }
