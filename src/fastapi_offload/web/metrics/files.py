"""The metrics' multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, for `uvicorn --workers N`).

Each worker writes its counts to prometheus-client's files of its own process id in
that directory; a scrape, whichever worker answers it, sums the files of all of them.
Imported only when a metrics router is used (it imports prometheus-client).
"""

from __future__ import annotations

import glob
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .families import BUCKETS, COUNTERS, GAUGES, HISTOGRAMS, PREFIX, TOTALS, totals

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ...core.runtime import Runtime

__all__ = ["Writer", "every_worker", "new_writer"]


class _Files:
    """prometheus-client's metrics backed by this process's files: one set per process,
    shared by its runtimes (two sets would overwrite each other's file entries)."""

    def __init__(self) -> None:
        self.counters = {
            event: Counter(PREFIX + name, text, labels, registry=None)
            for event, (name, text, labels) in COUNTERS.items()
        }
        self.histograms = {
            kind: Histogram(PREFIX + name, text, ("lane",), registry=None, buckets=BUCKETS)
            for kind, (name, text) in HISTOGRAMS.items()
        }
        # livesum: the sum over the workers alive (a dead one's file is dropped at scrape).
        self.gauges = {
            field: Gauge(PREFIX + name, text, ("lane",), registry=None, multiprocess_mode="livesum")
            for field, (name, text) in GAUGES.items()
        }
        self.totals = {
            field: Counter(PREFIX + name, text, registry=None)
            for field, (name, text) in TOTALS.items()
        }


_FILES: list[_Files] = []  # at most one, made for the first runtime observed
_LOCK = threading.Lock()


def new_writer() -> Writer | None:
    """A writer for a runtime just observed, or `None` outside multiprocess mode."""
    # prometheus-client chose its mode when it was first imported: follow it, not what
    # os.environ says now. Its metrics store their values in `values.ValueClass`, which is
    # `MutexValue` in one process and a file-backed class in multiprocess mode (not public
    # API: tests/contracts/test_prometheus_client.py checks it on each version).
    if values.ValueClass is values.MutexValue:
        return None
    with _LOCK:
        if not _FILES:
            _FILES.append(_Files())
    return Writer(_FILES[0])


class Writer:
    """What one runtime adds to this process's files."""

    def __init__(self, files: _Files) -> None:
        self._files = files
        # Gauges and the monitor's totals are written as deltas from what this runtime
        # wrote last: every runtime of the process adds to the same file entries.
        self._written: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()  # written from the loop and from request threads
        self._counters: dict[tuple[str, tuple[str, ...]], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}
        self._gauges: dict[tuple[str, str], Gauge] = {}

    def count(self, event: str, key: tuple[str, ...], amount: int) -> None:
        child = self._counters.get((event, key))
        if child is None:  # `labels()` validates and locks: a few microseconds each time
            child = self._counters[event, key] = self._files.counters[event].labels(*key)
        child.inc(amount)

    def time(self, kind: str, lane: str, seconds: float | None) -> None:
        """Observe `seconds`; `None`: only make the lane's series (at 0)."""
        child = self._histograms.get((kind, lane))
        if child is None:
            child = self._histograms[kind, lane] = self._files.histograms[kind].labels(lane)
        if seconds is not None:
            child.observe(seconds)

    def state(self, runtime: Runtime, lanes: Sequence[str], with_totals: bool) -> None:
        """Write the lanes' gauges (and the loop-block and crash totals) that changed."""
        with self._lock:
            written = self._written
            for lane in lanes:
                stats = runtime.ledger.lane_stats(lane)
                for field in GAUGES:
                    value = getattr(stats, field)
                    if delta := value - written.get((field, lane), 0):
                        gauge = self._gauges.get((field, lane))
                        if gauge is None:
                            gauge = self._files.gauges[field].labels(lane)
                            self._gauges[field, lane] = gauge
                        gauge.inc(delta)
                        written[field, lane] = value
            if with_totals:
                for field, value in totals(runtime).items():
                    if delta := value - written.get((field, ""), 0):
                        self._files.totals[field].inc(delta)
                        written[field, ""] = value


class _EveryWorker:
    def collect(self) -> Iterator[Metric]:
        directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        _forget_dead_workers(directory)
        # prometheus-client's multiprocess module has no annotations.
        collector = MultiProcessCollector(None, directory)  # type: ignore[no-untyped-call]
        for metric in collector.collect():  # type: ignore[no-untyped-call]
            if metric.name.startswith(PREFIX):  # the app's own metrics are for its own route
                yield metric


def every_worker() -> CollectorRegistry:
    """A registry with our metrics summed over the files of every worker."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_EveryWorker())
    return registry


def _forget_dead_workers(directory: str) -> None:
    # uvicorn restarts a worker that died, and nothing tells prometheus-client: without
    # this, a dead worker's last waiting and running values would be added for ever.
    if sys.platform == "win32":  # os.kill(pid, 0) would end the process there
        return
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = os.path.basename(path)[: -len(".db")].rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]  # as above


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True
