"""The Celery app of the `celery` strategy: one task that runs a benchmark job by kind,
and `noop`, the task of the dispatch scenario's `celery-delay` peer.

The worker is `celery -A benchmarks._celery_app worker -c 2` (started by `_workers`).
Arguments travel as JSON, Celery's default; results are not stored (the strategy asks
for none), and each finished job bumps a counter in Redis so the app can tell when a
batch is done without polling one result per job.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

from . import _jobs

BROKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")

app = Celery("benchmarks", broker=BROKER_URL)
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # Where `task.delay()` sends (the dispatch peer): this run's queue, which the worker
    # started by `_workers.celery_worker` consumes. `run` names its queue explicitly.
    task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "celery"),
)

_redis: redis.Redis | None = None


@app.task(name="benchmarks.noop")  # type: ignore[untyped-decorator]  # celery ships no types
def noop() -> None:
    """The dispatch scenario's peer task: `noop.delay()` per request, nothing to count."""


@app.task(name="benchmarks.run")  # type: ignore[untyped-decorator]  # celery ships no types
def run(kind: str, args: list[Any], key: str) -> None:
    global _redis
    if kind == "cpu":
        _jobs.crunch(*args)
    elif kind == "sleep":
        _jobs.block(*args)
    elif kind != "noop":
        raise ValueError(f"unknown job kind {kind!r}")
    if _redis is None:
        _redis = redis.Redis.from_url(BROKER_URL)
    pipe = _redis.pipeline(transaction=False)
    pipe.incr(key + ":done")
    pipe.expire(key + ":done", 3600)  # the spare database is not left to fill up
    pipe.set(key + ":last", repr(time.time()), ex=3600)
    pipe.execute()
