"""`offload.metrics_router()`: the values it serves, its format, its protection, and the
sum over the workers of a real `uvicorn --workers 2`."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from fastapi_offload import Offload, OffloadTasks, TaskState
from fastapi_offload._config import OffloadConfig
from fastapi_offload._record import TaskRecord
from fastapi_offload.core.ledger import Ledger
from fastapi_offload.core.observers import Observer
from fastapi_offload.core.runtime import Runtime
from fastapi_offload.testing import RecordingBackend
from fastapi_offload.web.lookup import RUNTIME_KEY
from fastapi_offload.web.metrics.router import BUCKETS, RuntimeMetrics, metrics_of

from ..apps import jobs
from ..conftest import StartServer
from ..helpers import serve

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
TYPES = {
    "fastapi_offload_tasks_admitted": "counter",
    "fastapi_offload_tasks_rejected": "counter",
    "fastapi_offload_tasks": "counter",
    "fastapi_offload_tasks_retried": "counter",
    "fastapi_offload_tasks_handed_off": "counter",
    "fastapi_offload_tasks_discarded": "counter",
    "fastapi_offload_task_wait_seconds": "histogram",
    "fastapi_offload_task_duration_seconds": "histogram",
    "fastapi_offload_tasks_waiting": "gauge",
    "fastapi_offload_tasks_running": "gauge",
    "fastapi_offload_tasks_scheduled": "gauge",
    "fastapi_offload_lane_capacity": "gauge",
    "fastapi_offload_threads_abandoned": "gauge",
    "fastapi_offload_loop_blocks": "counter",
    "fastapi_offload_process_crashes": "counter",
    "fastapi_offload_process_cpu_seconds": "counter",
}


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


async def scrape(client: httpx.AsyncClient, path: str = "/metrics") -> Samples:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def metrics_app(offload: Offload) -> FastAPI:
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.metrics_router())
    return app


async def until_running(offload: Offload, task_id: str) -> None:
    with anyio.fail_after(10):
        while True:
            if (await offload.status(task_id)).state is TaskState.RUNNING:
                return
            await anyio.sleep(0.01)


@asynccontextmanager
async def no_lifespan(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


# -- values -----------------------------------------------------------------------------


async def test_counters_and_histograms_after_tasks_on_each_lane(tmp_path: Path) -> None:
    offload = Offload(thread_workers=1, process_workers=1)
    async with serve(metrics_app(offload), offload) as client:
        await offload.submit(jobs.async_sleep, 0)
        await offload.submit(jobs.crunch, 10)
        await offload.submit(jobs.fail, "boom")
        await offload.submit(jobs.burn_in_process, 0.01)
        await offload.submit(jobs.fail_in_process, "boom")
        flaky = jobs.Flaky(str(tmp_path / "calls"), failures=1)  # fails once, then succeeds
        await offload.options(retries=1, retry_delay=0).submit(flaky)
        sleeper = await offload.submit(jobs.async_sleep, 30)
        await until_running(offload, sleeper.id)
        assert await offload.cancel(sleeper.id)
        await offload.join()
        samples = await scrape(client)

    ended = {
        ("loop", "succeeded"): 1,
        ("loop", "cancelled"): 1,
        ("thread", "succeeded"): 2,
        ("thread", "failed"): 1,
        ("process", "succeeded"): 1,
        ("process", "failed"): 1,
    }
    for lane in ("loop", "thread", "process"):
        for state in ("succeeded", "failed", "cancelled"):
            expected = ended.get((lane, state), 0)
            assert value(samples, "fastapi_offload_tasks_total", lane=lane, state=state) == expected
    admitted = {"loop": 2, "thread": 3, "process": 2}
    for lane, count in admitted.items():
        assert value(samples, "fastapi_offload_tasks_admitted_total", lane=lane) == count
        # Every task started (once, for its wait) and ended after it started.
        for histogram in ("task_wait_seconds", "task_duration_seconds"):
            name = f"fastapi_offload_{histogram}"
            assert value(samples, f"{name}_count", lane=lane) == count
            assert value(samples, f"{name}_bucket", lane=lane, le="+Inf") == count
        assert value(samples, "fastapi_offload_tasks_rejected_total", lane=lane) == 0
        assert value(samples, "fastapi_offload_tasks_waiting", lane=lane) == 0
        assert value(samples, "fastapi_offload_tasks_running", lane=lane) == 0
    assert value(samples, "fastapi_offload_tasks_retried_total", lane="thread") == 1
    assert value(samples, "fastapi_offload_tasks_retried_total", lane="process") == 0
    # The cancelled sleeper ran about no time; the one cancelled at 30 s is under 30 s.
    loop_duration = value(samples, "fastapi_offload_task_duration_seconds_sum", lane="loop")
    assert 0 <= loop_duration < 30
    assert value(samples, "fastapi_offload_lane_capacity", lane="thread") == 1
    assert value(samples, "fastapi_offload_lane_capacity", lane="process") == 1
    assert value(samples, "fastapi_offload_process_cpu_seconds_total") > 0


async def test_gauges_show_running_and_waiting_tasks() -> None:
    release = threading.Event()
    offload = Offload(thread_workers=1)
    async with serve(metrics_app(offload), offload) as client:
        first = await offload.submit(release.wait, 10)
        second = await offload.submit(release.wait, 10)
        await until_running(offload, first.id)
        busy = await scrape(client)
        assert await offload.cancel(second.id)  # cancelled while it waits: never started
        release.set()
        await offload.join()
        done = await scrape(client)

    assert value(busy, "fastapi_offload_tasks_running", lane="thread") == 1
    assert value(busy, "fastapi_offload_tasks_waiting", lane="thread") == 1
    assert value(busy, "fastapi_offload_task_wait_seconds_count", lane="thread") == 1
    assert value(done, "fastapi_offload_tasks_running", lane="thread") == 0
    assert value(done, "fastapi_offload_tasks_waiting", lane="thread") == 0
    assert value(done, "fastapi_offload_tasks_total", lane="thread", state="succeeded") == 1
    assert value(done, "fastapi_offload_tasks_total", lane="thread", state="cancelled") == 1
    # The cancelled one never started: neither a wait nor a duration of its own.
    assert value(done, "fastapi_offload_task_wait_seconds_count", lane="thread") == 1
    assert value(done, "fastapi_offload_task_duration_seconds_count", lane="thread") == 1


async def test_a_full_lane_is_a_503_and_counted_as_rejected() -> None:
    release = threading.Event()
    offload = Offload(max_pending=1, thread_workers=1)
    app = metrics_app(offload)

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        for _ in range(3):
            tasks.add_task(release.wait, 10)

    async with serve(app, offload) as client:
        response = await client.post("/")
        samples = await scrape(client)
    assert response.status_code == 503
    assert value(samples, "fastapi_offload_tasks_rejected_total", lane="thread") == 1
    assert value(samples, "fastapi_offload_tasks_rejected_total", lane="loop") == 0
    # The first task's request failed (a 503): admitted, then discarded, never run.
    assert value(samples, "fastapi_offload_tasks_admitted_total", lane="thread") == 1
    assert value(samples, "fastapi_offload_tasks_discarded_total", lane="thread") == 1


async def test_loop_blocks_are_counted() -> None:
    offload = Offload(loop_block_threshold=0.05)
    async with serve(metrics_app(offload), offload) as client:
        assert value(await scrape(client), "fastapi_offload_loop_blocks_total") == 0
        await offload.submit(jobs.block_loop, 0.2)
        await offload.join()
        samples = await scrape(client)
    assert value(samples, "fastapi_offload_loop_blocks_total") == 1


async def test_process_crashes_are_counted() -> None:
    offload = Offload(process_workers=1)
    async with serve(metrics_app(offload), offload) as client:
        await offload.submit(jobs.die)
        await offload.join()
        samples = await scrape(client)
    assert value(samples, "fastapi_offload_process_crashes_total") == 1
    assert value(samples, "fastapi_offload_tasks_total", lane="process", state="failed") == 1


async def test_tasks_handed_to_a_remote_backend() -> None:
    offload = Offload(backend=RecordingBackend())
    async with serve(metrics_app(offload), offload) as client:
        await offload.submit(jobs.crunch, 10)
        samples = await scrape(client)
    assert value(samples, "fastapi_offload_tasks_admitted_total", lane="recording") == 1
    assert value(samples, "fastapi_offload_tasks_handed_off_total", lane="recording") == 1


def test_a_duration_falls_in_the_bucket_whose_bound_it_equals() -> None:
    # Prometheus' `le` is inclusive: 0.5 s counts in the 0.5 bucket.
    runtime = Runtime(OffloadConfig(), None)  # held: the metrics keep a weak reference
    metrics = metrics_of(runtime)
    ended = TaskRecord(
        id="t1",
        name="job",
        lane="thread",
        func=None,
        args=(),
        kwargs={},
        timeout=None,
        retries=0,
        retry_delay=0.0,
        state=TaskState.SUCCEEDED,
        started_at=100.0,
        finished_at=100.5,
    )
    metrics.observe("finished", ended)  # what the ledger tells its observers
    [family] = [f for f in metrics.registry.collect() if f.name.endswith("duration_seconds")]
    buckets = {
        s.labels["le"]: s.value
        for s in family.samples
        if s.name.endswith("_bucket") and s.labels["lane"] == "thread"
    }
    assert buckets["0.25"] == 0 and buckets["0.5"] == 1 and buckets["+Inf"] == 1
    assert len(buckets) == len(BUCKETS) + 1


# -- format -----------------------------------------------------------------------------


async def test_the_exposition_parses_as_prometheus_text_and_openmetrics() -> None:
    offload = Offload()
    async with serve(metrics_app(offload), offload) as client:
        await offload.submit(jobs.crunch, 10)
        await offload.join()
        text = (await client.get("/metrics")).text
        accept = {"accept": "application/openmetrics-text; version=1.0.0"}
        response = await client.get("/metrics", headers=accept)
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types == TYPES
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    # The OpenMetrics parser is strict (`# EOF`, suffixes, bucket order); it is unannotated.
    families = openmetrics_families(response.text)  # type: ignore[no-untyped-call]
    assert {f.name: f.type for f in families} == TYPES


# -- the router -------------------------------------------------------------------------


async def test_dependencies_protect_the_route(monkeypatch: pytest.MonkeyPatch) -> None:
    from docs_src import metrics_app as example

    monkeypatch.setenv("METRICS_TOKEN", "s3cret")
    async with serve(example.app, example.offload) as client:
        assert (await client.post("/orders/7")).status_code == 202
        await example.offload.join()
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"authorization": "Bearer guess"})
        right = await client.get("/metrics", headers={"authorization": "Bearer s3cret"})
        health = await client.get("/health")
    assert anonymous.status_code in (401, 403)  # HTTPBearer's own answer: no credentials
    assert wrong.status_code == 401
    assert right.status_code == 200 and health.status_code == 200
    samples = parse(right.text)
    assert value(samples, "fastapi_offload_tasks_total", lane="thread", state="succeeded") >= 1


async def test_two_offloads_in_one_process_keep_their_own_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    observed: list[tuple[Ledger, Observer]] = []
    add_observer = Ledger.add_observer

    def spy(ledger: Ledger, observer: Observer) -> None:
        observed.append((ledger, observer))
        add_observer(ledger, observer)

    monkeypatch.setattr(Ledger, "add_observer", spy)
    first, second = Offload(), Offload()
    first_app, second_app = metrics_app(first), metrics_app(second)
    first_app.include_router(first.metrics_router(path="/again"))
    async with (
        serve(first_app) as one,
        first.lifespan(first_app) as first_state,
        serve(second_app) as other,
        second.lifespan(second_app) as second_state,
    ):
        await first.submit(jobs.crunch, 10)
        await first.join()
        mine, again, theirs = await scrape(one), await scrape(one, "/again"), await scrape(other)
    name = "fastapi_offload_tasks_total"
    assert value(mine, name, lane="thread", state="succeeded") == 1
    assert value(again, name, lane="thread", state="succeeded") == 1
    assert value(theirs, name, lane="thread", state="succeeded") == 0
    # One observer per runtime, however many routers serve it. The runtimes are the ones
    # the lifespans hand to requests.
    runtime, other_runtime = first_state[RUNTIME_KEY], second_state[RUNTIME_KEY]
    observers = [observer for ledger, observer in observed if ledger is runtime.ledger]
    assert [type(o) for o in observers].count(RuntimeMetrics) == 1
    assert metrics_of(runtime) is metrics_of(runtime)
    assert metrics_of(runtime) is not metrics_of(other_runtime)


async def test_without_a_lifespan_the_default_runtime_is_served() -> None:
    offload = Offload()  # never started: requests use the app's default runtime
    app = FastAPI()
    app.include_router(offload.metrics_router())

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        tasks.add_task(jobs.crunch, 10)

    async with no_lifespan(app) as client:
        await client.post("/")  # its task ran before the response's call returned
        first = await scrape(client)  # the default runtime is observed from here on
        await client.post("/")
        second = await scrape(client)
    name = "fastapi_offload_tasks_total"
    assert value(first, name, lane="thread", state="succeeded") == 1  # from its counters
    assert value(first, "fastapi_offload_tasks_admitted_total", lane="thread") == 1
    assert value(first, "fastapi_offload_task_wait_seconds_count", lane="thread") == 0
    assert value(second, name, lane="thread", state="succeeded") == 2
    assert value(second, "fastapi_offload_task_wait_seconds_count", lane="thread") == 1
    assert value(second, "fastapi_offload_task_duration_seconds_count", lane="thread") == 1


# -- the extra --------------------------------------------------------------------------


def test_importing_the_package_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, fastapi_offload\n"
        "fastapi_offload.Offload().status_router()\n"
        "assert 'prometheus_client' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_the_extra_the_error_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(ImportError, match=r"needs prometheus-client: pip install .*\[metrics\]"):
        Offload().metrics_router()


# -- uvicorn --workers 2 ----------------------------------------------------------------


def _succeeded(text: str) -> float:
    return value(parse(text), "fastapi_offload_tasks_total", lane="thread", state="succeeded")


def _worker_counts(directory: Path) -> dict[str, float]:
    """Tasks each worker process counted, read from its own file."""
    counts = {}
    for path in glob.glob(str(directory / "counter_*.db")):
        # prometheus-client's multiprocess module has no annotations.
        merged = MultiProcessCollector.merge([path])  # type: ignore[no-untyped-call]
        counts[Path(path).stem.split("_")[1]] = sum(
            s.value
            for metric in merged
            if metric.name == "fastapi_offload_tasks"
            for s in metric.samples
            if s.labels.get("state") == "succeeded"
        )
    return counts


@pytest.mark.server
def test_with_workers_every_scrape_sums_every_worker(
    start_server: StartServer, tmp_path: Path
) -> None:
    files = tmp_path / "prometheus"
    files.mkdir()  # empty at start, as prometheus-client asks
    env = {"PROMETHEUS_MULTIPROC_DIR": str(files), "METRICS_TOKEN": "t"}
    server = start_server("docs_src.metrics_app:app", env=env, args=("--workers", "2"))
    # A new connection each time, several at once: both workers get requests.
    headers = {"Connection": "close", "Authorization": "Bearer t"}

    def call(method: str, path: str) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            return client.request(method, path, headers=headers)

    # The kernel hands connections to whichever worker accepts first, so one worker
    # may take a whole burst: post in rounds until both have run some.
    posted = 0
    per_worker: dict[str, float] = {}
    while posted < 200 and not (len(per_worker) == 2 and all(per_worker.values())):
        with ThreadPoolExecutor(8) as pool:
            placed = list(pool.map(lambda i: call("POST", f"/orders/{i}"), range(20)))
        assert {response.status_code for response in placed} == {202}
        posted += 20
        deadline = time.monotonic() + 20
        while _succeeded(call("GET", "/metrics").text) < posted:
            assert time.monotonic() < deadline, "tasks did not finish"
            time.sleep(0.1)
        per_worker = _worker_counts(files)
    assert len(per_worker) == 2 and all(per_worker.values()), per_worker  # both ran some
    assert sum(per_worker.values()) == posted
    with ThreadPoolExecutor(4) as pool:
        scrapes = [r.text for r in pool.map(lambda _: call("GET", "/metrics"), range(12))]
    assert {_succeeded(text) for text in scrapes} == {posted}  # whichever worker answered
    capacity = Offload().config.thread_workers
    for text in scrapes:
        assert value(parse(text), "fastapi_offload_lane_capacity", lane="thread") == 2 * capacity

    # A worker killed (an OOM kill): uvicorn starts another; its counts stay, and its
    # gauges are no longer added once it is gone.
    os.kill(int(min(per_worker)), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while server.log().count("Application startup complete") < 3:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    after = parse(call("GET", "/metrics").text)
    name = "fastapi_offload_tasks_total"
    assert value(after, name, lane="thread", state="succeeded") == posted
    assert value(after, "fastapi_offload_lane_capacity", lane="thread") == 2 * capacity
