"""The demo's background job: about half a second of pure-Python CPU work."""

from __future__ import annotations

from fastapi_offload import cpu_bound


# `@cpu_bound` sends the function to the process lane when it goes through OffloadTasks.
# It returns the function unchanged, so BackgroundTasks (and plain calls) still work.
@cpu_bound
def crunch(iterations: int) -> int:
    """Pure Python arithmetic: it holds the GIL the whole time, like most real CPU work."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total
