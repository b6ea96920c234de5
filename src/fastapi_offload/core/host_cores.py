"""The warning when the process lanes of a host's processes outnumber its cores.

`process_workers` is per process: `uvicorn --workers 2` on 2 cores starts 2 process lanes
of 2 workers, 4 CPU-bound workers for 2 cores, and nothing said so. With a shared store
each process publishes its lane sizes (`stores.peers`), so one of them can add them up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from ..stores.peers import ProcessFigures

__all__ = ["CoresCheck", "host_cores"]

logger = logging.getLogger("fastapi_offload")


def host_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or taskset's
    limit), else every core of the host."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _alive(pid: int) -> bool:
    # A worker killed a moment ago keeps its figures until they expire: uvicorn's
    # replacement must not count twice. Same host, same pid namespace (mostly).
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


class CoresCheck:
    """Warns once, from the oldest live process of the host, so that `--workers N` logs
    it once rather than N times."""

    def __init__(
        self,
        host: str,
        cores: Callable[[], int] = host_cores,
        alive: Callable[[int], bool] = _alive,
    ) -> None:
        self.host = host
        self.warned = False
        self._cores = cores
        self._alive = alive

    def check(self, processes: Sequence[ProcessFigures]) -> str | None:
        """The warning logged (once), or None."""
        if self.warned:
            return None
        here = [p for p in processes if p.host == self.host and (p.here or self._alive(p.pid))]
        if not any(p.here for p in here):
            return None  # not published yet: the next renewal tells
        sizes = [lane.capacity if (lane := p.lane("process")) else 0 for p in here]
        total, cores = sum(sizes), self._cores()
        oldest = min(here, key=lambda p: (p.started_at, p.pid, not p.here))
        if total <= cores or not oldest.here:
            return None
        self.warned = True
        per_process = max(cores // len(here), 1)
        count = f"{len(here)} process{'es' if len(here) > 1 else ''}"
        message = (
            f"{count} on host {self.host} run {total} process-lane workers in all "
            f"({' + '.join(map(str, sizes))}: process_workers is per process) on {cores} CPU "
            f"core(s): CPU-bound tasks compete with each other and with the API for the cores. "
            f"Set process_workers={per_process} (OFFLOAD_PROCESS_WORKERS) to stay within "
            f"{cores}, or run fewer processes."
        )
        logger.warning("%s", message)
        return message
