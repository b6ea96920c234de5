"""The CPU advisor: tells CPU-bound sync callables on the thread lane apart from waiting ones."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CpuAdvisor", "CpuFinding", "RunDelay", "measured"]

logger = logging.getLogger("fastapi_offload")


@dataclass(frozen=True, slots=True)
class CpuFinding:
    """The run that got a callable flagged: `cpu` of its `wall` seconds on the CPU, with
    `busy` lane threads sharing the GIL."""

    name: str
    wall: float
    cpu: float
    busy: int
    at: float  # `time.time()` when it was flagged

    @property
    def share(self) -> float:
        """The part of its time it kept the GIL (0.0-1.0), as the advisor judges it:
        CPU time over its fair share of the wall time (`wall / busy`)."""
        return min(self.cpu * max(self.busy, 1) / self.wall, 1.0)


class CpuAdvisor:
    """Watches CPU time against wall time of sync callables on the thread lane.

    A thread running pure Python holds the GIL, so its CPU time is close to its wall
    time; a thread waiting on I/O uses little CPU. Several CPU-bound threads share one
    GIL, so each gets about 1/k of the wall time: the ratio is scaled by the number of
    lane threads that were busy. Time spent waiting for a CPU (a busy machine) is not
    counted as wall time. A callable found CPU-bound is named once in a warning,
    and (with `auto_promote`) routed to the process lane.
    """

    MIN_CPU = 0.05
    RATIO = 0.5  # waiting code (I/O, sleep) stays far below; GIL-bound code far above

    def __init__(self) -> None:
        self.flagged: set[str] = set()
        # What got each flagged callable flagged, for the dashboard (one per callable).
        self.findings: dict[str, CpuFinding] = {}

    def observe(self, name: str, wall: float, cpu: float, busy: int, declared: bool) -> None:
        if declared or name in self.flagged or cpu < self.MIN_CPU:
            return
        if cpu * max(busy, 1) < self.RATIO * wall:
            return
        self.findings[name] = CpuFinding(name, wall, cpu, busy, time.time())
        self.flagged.add(name)
        logger.warning(
            "%s spent %.0f%% of its %.2f s on the CPU in the thread lane (%d busy threads): "
            "it holds the GIL "
            "and slows every request while it runs. Decorate it with @cpu_bound (or route "
            "it with Offload(routes={%r: 'process'})) to run it in a worker process; "
            "Offload(auto_promote=True) does that automatically. Decorate it with "
            "@io_bound to silence this advice.",
            name,
            100 * cpu / wall,
            wall,
            busy,
            name,
        )


def _run_delay() -> float:
    # Seconds this thread was runnable but waiting for a CPU (Linux schedstat). Taken
    # off the wall time, a busy machine does not make CPU-bound code look like waiting;
    # waiting for the GIL is a sleep, not a run delay, so it still counts.
    try:
        with open("/proc/thread-self/schedstat", "rb") as file:
            return int(file.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class RunDelay:
    """`_run_delay` for one long-lived thread, from a file it keeps open: opening the
    file each time costs ~30 us, twice per call, which was most of a no-op task's time
    in a worker thread; a re-read costs ~3 us. Made, used and closed in that thread
    (`/proc/thread-self` names the thread that opens it)."""

    __slots__ = ("_fd",)

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def __call__(self) -> float:
        if self._fd is None:
            return 0.0
        try:
            return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def measured(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    on_done: Callable[[float, float], None],
    run_delay: Callable[[], float] = _run_delay,
    min_cpu: float = 0.0,
) -> Any:
    """Call `func` in this (worker) thread, report its wall and CPU seconds, return its
    value. `run_delay`: this thread's (a `RunDelay` made in it). The wall time is
    corrected for the run delay only when the call used `min_cpu` seconds of CPU or
    more: below that the advisor does not look at it (`CpuAdvisor.MIN_CPU`), and the
    second read is a third of what measuring a no-op call costs."""
    wall, cpu, delay = time.perf_counter(), time.thread_time(), run_delay()
    try:
        return func(*args, **kwargs)
    finally:
        elapsed = time.perf_counter() - wall
        used = time.thread_time() - cpu
        if used >= min_cpu:
            elapsed -= run_delay() - delay
        on_done(max(elapsed, 1e-9), used)
