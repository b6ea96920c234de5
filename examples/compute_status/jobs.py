"""The job: count primes by trial division, pure-Python CPU work that holds the GIL."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from fastapi_offload import cpu_bound


@cpu_bound(timeout=600)
def count_primes(below: int, out_path: str) -> int:
    """Count the primes below `below` and write the result to `out_path` as JSON.

    The result goes to a file because fastapi-offload keeps no return values for
    local lanes: a task stores its result where your app can read it.
    """
    started = time.process_time()
    count = sum(1 for n in range(2, below) if all(n % d for d in range(2, math.isqrt(n) + 1)))
    result = {
        "below": below,
        "primes": count,
        "cpu_seconds": round(time.process_time() - started, 3),
        "worker_pid": os.getpid(),
    }
    # Write then rename: a reader never sees half a file.
    partial = Path(f"{out_path}.partial")
    partial.write_text(json.dumps(result))
    partial.replace(out_path)
    return count
