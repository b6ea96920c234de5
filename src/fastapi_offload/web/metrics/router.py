"""`offload.metrics_router()`: the runtime's counters in the Prometheus text format.

prometheus-client (the `metrics` extra, imported only when a metrics router is built) is
used rather than hand-written text because its multiprocess mode is the one way
Prometheus users already know to sum counters and histograms over `uvicorn --workers N`
(hand-written text would have to reinvent it), and it brings a tested exposition format
with OpenMetrics negotiation.

One process (the default): a collector of each runtime reads at scrape time what the
ledger, the loop monitor and the process lane count anyway; the ledger's observer adds
what they do not count (admissions, rejections, ended tasks, wait and duration
histograms) with a few dict and list operations per transition. With
`PROMETHEUS_MULTIPROC_DIR` set, the observer also writes each change to
prometheus-client's files of this process, and a scrape, whichever worker answers it,
sums the files of every worker.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import APIRouter, Request, params
from fastapi.responses import Response

from ..._extras import install_hint
from ..._record import TaskRecord
from ...core.runtime import Runtime
from ..lookup import runtime_for
from .families import BUCKETS, COUNTERS, ENDED, GAUGES, HISTOGRAMS, PREFIX, TOTALS, totals

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from .files import Writer

__all__ = ["BUCKETS", "RuntimeMetrics", "build_metrics_router", "metrics_of"]

logger = logging.getLogger("fastapi_offload")


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; last: +Inf
        self.total = 0.0


class RuntimeMetrics:
    """The metrics of one runtime: its ledger's observer, and what a scrape reads."""

    def __init__(self, runtime: Runtime, writer: Writer | None) -> None:
        from prometheus_client import CollectorRegistry

        # Weak: this object is a value of `_ATTACHED`, whose key must be free to go.
        self._runtime = weakref.ref(runtime)
        self._lanes = tuple(runtime.lanes)
        self.writer = writer  # multiprocess mode: what writes this runtime to the files
        self._counts: dict[str, dict[tuple[str, ...], int]] = {event: {} for event in COUNTERS}
        self._times: dict[str, dict[str, _Histogram]] = {kind: {} for kind in HISTOGRAMS}
        # Every local lane's series from the start, at 0: a rate over the first rejection
        # (or failure) needs a sample from before it.
        for lane in self._lanes:
            for state in ENDED:
                self._count("finished", (lane, state), 0)
            for event in ("admitted", "rejected", "retrying"):
                self._count(event, (lane,), 0)
            for kind in HISTOGRAMS:
                self._times[kind][lane] = _Histogram()
                if writer is not None:
                    writer.time(kind, lane, None)
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- the observer (under the ledger's lock: keep it to a few dict operations) ---------

    def observe(self, event: str, record: TaskRecord) -> None:
        lane = record.lane
        if event == "started":
            if record.attempts == 1 and record.started_at is not None:
                # A delayed task waits in the queue from its due time, not its admission.
                since = record.due_at if record.due_at is not None else record.created_at
                self._time("wait", lane, record.started_at - since)
        elif event in self._counts:
            key = (lane, record.state.value) if event == "finished" else (lane,)
            self._count(event, key, 1)
            if event == "finished" and record.started_at and record.finished_at:
                self._time("duration", lane, record.finished_at - record.started_at)
        if self.writer is not None and lane in self._lanes:
            runtime = self._runtime()
            if runtime is not None:  # after an attempt, a crash or a loop block may be new
                self.writer.state(runtime, (lane,), event == "finished" or event == "retrying")

    def _count(self, event: str, key: tuple[str, ...], amount: int) -> None:
        counts = self._counts[event]
        counts[key] = counts.get(key, 0) + amount
        if self.writer is not None:
            self.writer.count(event, key, amount)

    def _time(self, kind: str, lane: str, seconds: float) -> None:
        seconds = max(seconds, 0.0)  # the wall clock may have been set back
        histogram = self._times[kind].get(lane)
        if histogram is None:
            histogram = self._times[kind][lane] = _Histogram()
        histogram.counts[bisect.bisect_left(BUCKETS, seconds)] += 1  # `le`: inclusive
        histogram.total += seconds
        if self.writer is not None:
            self.writer.time(kind, lane, seconds)

    def write(self) -> None:
        """Bring this process's files up to date (multiprocess mode; before a scrape)."""
        runtime = self._runtime()
        if self.writer is not None and runtime is not None:
            self.writer.state(runtime, self._lanes, True)

    def seed(self, runtime: Runtime) -> None:
        """Count what the runtime did before it was observed (the default runtime, which
        the first request that adds a task makes, is found by the first scrape)."""
        for lane in self._lanes:
            stats = runtime.ledger.lane_stats(lane)
            ended = {state: getattr(stats, state) for state in ENDED}
            for state, count in ended.items():
                if count:
                    self._count("finished", (lane, state), count)
            if stats.retried:
                self._count("retrying", (lane,), stats.retried)
            if admitted := stats.scheduled + stats.waiting + stats.running + sum(ended.values()):
                self._count("admitted", (lane,), admitted)

    # -- the collector (one process) ------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        from prometheus_client.utils import floatToGoString

        runtime = self._runtime()
        if runtime is None:
            return
        # `sorted(...items())` and `list(...)` copy in one C call, atomic under the GIL: a
        # transition in a request's thread cannot change a dict while it is read.
        for event, (name, text, labels) in COUNTERS.items():
            counter = CounterMetricFamily(PREFIX + name, text, labels=labels)
            for key, count in sorted(self._counts[event].items()):
                counter.add_metric(key, count)
            yield counter
        bounds = [*map(floatToGoString, BUCKETS), "+Inf"]
        for kind, (name, text) in HISTOGRAMS.items():
            histogram = HistogramMetricFamily(PREFIX + name, text, labels=("lane",))
            for lane, seen in sorted(self._times[kind].items()):
                cumulative = itertools.accumulate(list(seen.counts))
                histogram.add_metric([lane], list(zip(bounds, cumulative, strict=True)), seen.total)
            yield histogram
        stats = {lane: runtime.ledger.lane_stats(lane) for lane in self._lanes}
        for field, (name, text) in GAUGES.items():
            gauge = GaugeMetricFamily(PREFIX + name, text, labels=("lane",))
            for lane, lane_stats in stats.items():
                gauge.add_metric([lane], getattr(lane_stats, field))
            yield gauge
        for field, value in totals(runtime).items():
            name, text = TOTALS[field]
            yield CounterMetricFamily(PREFIX + name, text, value=value)


# One `RuntimeMetrics` per runtime, so a runtime is observed once however many routers
# serve it. Weak keys: a runtime that is gone takes its entry along; nothing to reset.
_ATTACHED: weakref.WeakKeyDictionary[Runtime, RuntimeMetrics] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def metrics_of(runtime: Runtime) -> RuntimeMetrics:
    """The runtime's metrics, observing its ledger from the first call on."""
    found = _ATTACHED.get(runtime)
    if found is not None:
        return found
    from .files import new_writer

    with _LOCK:
        found = _ATTACHED.get(runtime)
        if found is None:
            found = RuntimeMetrics(runtime, new_writer())
            # Seeded first, then observed: a transition in between is missed, never
            # counted twice (possible only on a default runtime's first scrape).
            found.seed(runtime)
            runtime.ledger.add_observer(found)
            found.write()
            _ATTACHED[runtime] = found
    return found


def _require_prometheus_client() -> None:
    try:
        import prometheus_client  # noqa: F401 - only to fail early, with the command
    except ImportError as exc:
        raise ImportError(
            f"offload.metrics_router() needs prometheus-client: {install_hint('metrics')}"
        ) from exc


def build_metrics_router(
    runtime: Runtime, *, path: str, tags: list[str], dependencies: Sequence[params.Depends]
) -> APIRouter:
    _require_prometheus_client()
    metrics_of(runtime)  # observed before its lifespan starts: no task goes uncounted
    router = APIRouter(tags=list(tags), dependencies=list(dependencies))
    warned: weakref.WeakSet[Runtime] = weakref.WeakSet()

    @router.get(
        path,
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}},
        summary="Prometheus metrics of the offloaded tasks",
    )
    async def metrics(request: Request) -> Response:
        from prometheus_client.exposition import choose_encoder

        from .files import every_worker

        # An Offload that was never started (no lifespan): the app's default runtime.
        serving = runtime_for(request, runtime)
        found = metrics_of(serving)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        if found.writer is None:
            return Response(encoder(found.registry), media_type=content_type)
        if serving is not runtime and serving not in warned:
            warned.add(serving)
            logger.warning(
                "metrics_router(): this app's tasks do not run on the Offload whose router "
                "this is (no lifespan?): with --workers N, a worker's tasks are counted "
                "from the first scrape it answers. Use FastAPI(lifespan=offload.lifespan)."
            )
        found.write()
        # Reads the files of every worker: off the event loop.
        body = await anyio.to_thread.run_sync(encoder, every_worker())
        return Response(body, media_type=content_type)

    return router
