"""How busy the machine was with work that was not the demo's, while a mode ran.

The demo's numbers are only comparable to the README's on a quiet machine: the process
lane's workers run at low priority (nice 10) and give the CPU to any other load, so
their jobs' wall time grows with it. The demo therefore measures that other load and
says what it means, instead of leaving a slow row unexplained.

Other load = the CPU time the whole machine spent busy (Linux `/proc/stat`) minus the
CPU time of the demo's own processes: itself and its reaped children (the uvicorn
server, its worker processes, the prober), read with `os.times()` once the mode's
server has exited.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuMeter", "cores", "verdict"]

_STAT = Path("/proc/stat")
QUIET = 0.25  # cores of other load under which a run counts as quiet


def cores() -> int:
    """The cores this process may run on (what the demo's processes share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _machine_busy() -> float | None:
    """Seconds of CPU the whole machine has spent busy since boot (None off Linux)."""
    try:
        first = _STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ... in clock ticks
    ticks = [int(value) for value in first[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _own() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class CpuMeter:
    """Started before a mode's server, read after it exited (so its CPU is counted)."""

    busy: float | None
    own: float
    started: float

    @classmethod
    def start(cls) -> CpuMeter:
        return cls(_machine_busy(), _own(), time.monotonic())

    def other_cores(self) -> float | None:
        """Cores' worth of CPU used by other processes over the meter's time."""
        busy = _machine_busy()
        elapsed = time.monotonic() - self.started
        if busy is None or self.busy is None or elapsed <= 0:
            return None
        other = (busy - self.busy) - (_own() - self.own)
        return max(0.0, other / elapsed)


def verdict(worst: float | None, count: int) -> str:
    """What the other load of the run means for its numbers."""
    if worst is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        return (
            f"Other load could not be measured here (no /proc/stat); the 1-minute load "
            f"average is {load:.2f} on {count} cores. The README's table was measured on "
            "a quiet machine."
        )
    if worst < QUIET:
        return (
            f"The machine was quiet: other processes used at most {worst:.2f} of {count} "
            "cores during any mode, so these numbers are comparable to the README's."
        )
    return (
        f"The machine was NOT quiet: other processes used up to {worst:.2f} of {count} "
        "cores during a mode. The process lane's workers run at low priority (nice 10) "
        "and give the CPU to that load, so their jobs' wall time grows with it while "
        "/health stays fast; the README's table was measured with no other load. "
        "Run the demo again on an idle machine to compare."
    )
