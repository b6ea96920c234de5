"""The strategies the scenarios compare. Adding one is adding an entry to `STRATEGIES`."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from . import _workers
from ._harness import new_batch, post_jobs, wait_done
from ._servers import Server, Service, server
from ._workers import REDIS_URL, celery_worker, offload_celery_worker, offload_rq_workers

# What a user of the package would configure for a machine shared with the API: as many
# process workers as cores, started with the app, at a lower CPU priority (the default).
# The large queue bound lets the batch scenarios submit everything at once.
OFFLOAD_ENV = {
    "BENCH_STRATEGY": "offload",
    "OFFLOAD_PROCESS_WORKERS": "2",
    "OFFLOAD_PRESTART_WORKERS": "1",
    "OFFLOAD_MAX_PENDING": "200000",
}

# Workers a strategy needs: started before the strategy's server, stopped after it.
# It returns the running services and the environment the server needs to reach them.
WorkerStarter = Callable[[], tuple[list[Service], dict[str, str]]]


@dataclass(frozen=True)
class Strategy:
    name: str
    label: str
    env: Mapping[str, str] = field(default_factory=dict)
    worker: WorkerStarter | None = None
    # A module that must be importable for the strategy to run (an optional backend).
    requires: str | None = None
    needs_redis: bool = False

    def missing(self) -> str | None:
        """Why the strategy cannot run here, or None."""
        if self.requires is not None:
            try:
                found = importlib.util.find_spec(self.requires) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                return f"{self.requires} is not importable"
        if self.needs_redis:
            return _redis_missing()
        return None

    @contextlib.contextmanager
    def serve(self, tenants: int = 0, scope: str = "same") -> Iterator[Server]:
        """The benchmark app for this strategy, and its workers, running until exit.

        With remote workers, two no-op jobs go through the app first: when they are
        done, the workers are connected and have imported the jobs. `tenants` busy loops
        run beside the server, in its session or in their own (`benchmarks._tenants`).
        """
        services: list[Service] = []
        env = dict(self.env)
        prefix: list[str] = []
        if tenants:
            prefix = [sys.executable, "-m", "benchmarks._tenants", str(tenants), scope, "--"]
        try:
            if self.worker is not None:
                services, extra = self.worker()
                env |= extra
            with server("benchmarks.app:app", env, prefix) as srv:
                if self.worker is not None:
                    new_batch(srv.url)
                    post_jobs(srv.url, 1, {"kind": "noop", "count": 2})
                    wait_done(srv.url, 2, timeout=60.0)
                yield srv
        finally:
            for service in services:
                service.stop()


def _redis_missing() -> str | None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"no Redis at {REDIS_URL} ({exc})"
    finally:
        client.close()
    return None


def _celery2() -> tuple[list[Service], dict[str, str]]:
    return celery_worker(processes=2)


def _offload_celery2() -> tuple[list[Service], dict[str, str]]:
    return offload_celery_worker(processes=2)


def _offload_rq2() -> tuple[list[Service], dict[str, str]]:
    return offload_rq_workers(processes=2)


def _rq2() -> tuple[list[Service], dict[str, str]]:
    return _workers.rq_workers(processes=2)


# A file of its own per run of the suite (the store keeps what each run wrote).
_BENCH_DB = Path(tempfile.mkdtemp(prefix="fastapi-offload-bench-")) / "offload.db"


def _offload(lane: str, **env: str) -> dict[str, str]:
    # Remote results expire within the hour: the suite's Redis database stays small.
    return {**OFFLOAD_ENV, "BENCH_LANE": lane, "OFFLOAD_RESULT_TTL": "3600", **env}


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("bg-async", "BackgroundTasks, async def", {"BENCH_STRATEGY": "bg-async"}),
        Strategy("bg-def", "BackgroundTasks, def", {"BENCH_STRATEGY": "bg-def"}),
        # A reference line, not an alternative: a dependency and an asyncio task per task.
        Strategy("floor", "Floor: own dependency + asyncio task", {"BENCH_STRATEGY": "floor"}),
        Strategy("executor", "loop.run_in_executor(None)", {"BENCH_STRATEGY": "executor"}),
        Strategy("anyio", "anyio.to_process.run_sync", {"BENCH_STRATEGY": "anyio"}),
        Strategy(
            "celery",
            "Celery worker, 2 processes",
            {"BENCH_STRATEGY": "celery"},
            worker=_celery2,
            needs_redis=True,
        ),
        Strategy("offload-loop", "OffloadTasks, loop lane", _offload("loop")),
        # The same with every task written to a SQLite file before the response.
        Strategy(
            "offload-loop-sqlite",
            "OffloadTasks, loop lane, SQLite store",
            _offload("loop", OFFLOAD_STORE=f"sqlite:///{_BENCH_DB}"),
        ),
        Strategy(
            "offload-loop-redis",
            "OffloadTasks, loop lane, Redis store",
            # The suite's Redis database; statuses are pruned to status_capacity.
            _offload("loop", OFFLOAD_STORE=REDIS_URL),
            needs_redis=True,
        ),
        # The same with an idempotency key per task (a new one each time): the claim, one
        # transaction in the request, before the task's write-ahead.
        Strategy(
            "offload-loop-sqlite-key",
            "OffloadTasks, loop lane, SQLite store, key",
            _offload("loop", OFFLOAD_STORE=f"sqlite:///{_BENCH_DB}", BENCH_KEY="1"),
        ),
        Strategy(
            "offload-loop-redis-key",
            "OffloadTasks, loop lane, Redis store, key",
            _offload("loop", OFFLOAD_STORE=REDIS_URL, BENCH_KEY="1"),
            needs_redis=True,
        ),
        Strategy("offload-thread", "OffloadTasks, thread lane", _offload("thread")),
        Strategy("offload-process", "OffloadTasks, process lane", _offload("process")),
        # The same at normal priority and with SCHED_IDLE workers instead of the default
        # nice 10: what the default costs or saves, and how much of the remaining
        # /health delay is the scheduler's doing.
        Strategy(
            "offload-process-normal",
            "OffloadTasks, process lane, priority=normal",
            _offload("process", OFFLOAD_PROCESS_PRIORITY="normal"),
        ),
        Strategy(
            "offload-process-idle",
            "OffloadTasks, process lane, priority=idle",
            _offload("process", OFFLOAD_PROCESS_PRIORITY="idle"),
        ),
        # Experiments (Linux 6.12+, EEVDF slices; elsewhere the same as `normal`): workers
        # at nice 0 with the longest slice, which a waking API with its default slice
        # should preempt; or the API's loop thread with the shortest slice.
        Strategy(
            "offload-process-worker-slice",
            "OffloadTasks, process lane, priority=normal, worker slice 100 ms",
            _offload("process", OFFLOAD_PROCESS_PRIORITY="normal", BENCH_WORKER_SLICE_US="100000"),
        ),
        Strategy(
            "offload-process-api-slice",
            "OffloadTasks, process lane, priority=normal, API slice 0.1 ms",
            _offload("process", OFFLOAD_PROCESS_PRIORITY="normal", BENCH_API_SLICE_US="100"),
        ),
        # One worker leaves a core to the API: the other side of the latency/throughput
        # trade-off on a 2-core machine.
        Strategy(
            "offload-process-1",
            "OffloadTasks, process lane, 1 worker",
            _offload("process", OFFLOAD_PROCESS_WORKERS="1"),
        ),
        # Remote backends: the app sends to the backend's workers, 2 processes each.
        Strategy(
            "offload-celery",
            "OffloadTasks, Celery backend, 2 processes",
            _offload("remote"),
            worker=_offload_celery2,
            requires="fastapi_offload.backends.celery",
            needs_redis=True,
        ),
        Strategy(
            "offload-rq",
            "OffloadTasks, RQ backend, 2 workers",
            _offload("remote"),
            worker=_offload_rq2,
            requires="fastapi_offload.backends.rq",
            needs_redis=True,
        ),
        # Peers of the dispatch scenario, each written as its own docs show (`_peer_app`).
        Strategy(
            "taskflow",
            "fastapi-taskflow, Depends(get_tasks), async def task",
            {"BENCH_STRATEGY": "taskflow"},
            requires="fastapi_taskflow",
        ),
        Strategy(
            "celery-delay",
            "Celery task.delay(), def endpoint (thread pool), 2 processes",
            {"BENCH_STRATEGY": "celery-delay"},
            worker=_celery2,
            needs_redis=True,
        ),
        Strategy(
            "rq",
            "RQ queue.enqueue(), def endpoint (thread pool), 2 workers",
            {"BENCH_STRATEGY": "rq"},
            worker=_rq2,
            requires="rq",
            needs_redis=True,
        ),
    )
}


def variant(base: str, name: str, label: str, **env: str) -> Strategy:
    """A strategy of `STRATEGIES` with a few environment variables changed."""
    strategy = STRATEGIES[base]
    return dataclasses.replace(strategy, name=name, label=label, env={**strategy.env, **env})


# `--strategies`: when set, scenarios run only these of their strategies.
ONLY: set[str] = set()


def pick(names: list[str]) -> list[Strategy]:
    """The named strategies that can run here (the others are reported and skipped)."""
    chosen = []
    for name in names:
        if ONLY and name not in ONLY:
            continue
        strategy = STRATEGIES[name]
        reason = strategy.missing()
        if reason is None:
            chosen.append(strategy)
        else:
            print(f"  skipping {strategy.label}: {reason}", flush=True)
    return chosen
