"""The peers of the dispatch scenario: other libraries' way to add one task per request.

Each endpoint is written the way that library's own docs tell a FastAPI user to write it:

- `taskflow`: fastapi-taskflow's `TaskManager()` (in memory, its default), an
  `async def` task registered with `@task_manager.task()`, and
  `tasks.add_task(noop)` with `tasks=Depends(task_manager.get_tasks)`;
- `celery-delay`: `noop.delay()` in a `def` endpoint. `delay` talks to the broker with a
  blocking client, so the endpoint is `def` and FastAPI runs it in its thread pool (what
  FastAPI's docs say to do with a library that cannot be awaited);
- `rq`: `queue.enqueue(noop)` in a `def` endpoint, for the same reason, with a module-level
  `Queue(connection=Redis(...))` as RQ's docs show.

Only `kind=noop` is accepted: these apps exist for the dispatch scenario. For the peers
with a broker, `GET /done` counts a task as done once a worker has taken it from the
broker (Celery keeps no results here), which is what `Strategy.serve`'s warm-up needs to
know: the workers are connected. `GET /queued` is the broker's backlog, read after the
load to show whether the workers kept up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException

from ._calls import add_probe_routes

STRATEGIES = ("taskflow", "celery-delay", "rq")


def build(strategy: str) -> FastAPI:
    if strategy == "taskflow":
        return _taskflow()
    if strategy == "celery-delay":
        return _celery()
    if strategy == "rq":
        return _rq()
    raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")


def _noop_only(kind: str) -> None:
    if kind != "noop":
        raise HTTPException(422, "the peers' apps add no-op tasks only (kind=noop)")


def _taskflow() -> FastAPI:
    # Imported here: the other peers must run without fastapi-taskflow installed.
    from fastapi_taskflow import ManagedBackgroundTasks, TaskManager

    task_manager = TaskManager()

    @task_manager.task()  # type: ignore[untyped-decorator]  # fastapi-taskflow ships no types
    async def noop() -> None:
        return None

    # fastapi-taskflow's documented lifespan when TaskAdmin (its routes) is not mounted.
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await task_manager.startup()
        yield
        await task_manager.shutdown()

    app = FastAPI(lifespan=lifespan)
    add_probe_routes(app)

    @app.post("/jobs", status_code=202)
    async def jobs(
        kind: str = "noop",
        count: int = 1,
        tasks: ManagedBackgroundTasks = Depends(task_manager.get_tasks),
    ) -> dict[str, int]:
        _noop_only(kind)
        for _ in range(count):
            tasks.add_task(noop)
        return {"accepted": count}

    return app


class _Counter:
    """Tasks sent since `POST /batch`; `def` endpoints run in threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, count: int) -> None:
        with self._lock:
            self.value += count

    def reset(self) -> None:
        with self._lock:
            self.value = 0


def _broker_routes(app: FastAPI, sent: _Counter, queued: Any) -> None:
    """`/batch`, `/done` and `/queued` of a peer whose workers read a Redis list."""

    @app.post("/batch", status_code=204)
    def new_batch() -> None:
        sent.reset()

    @app.get("/done")
    def done() -> dict[str, Any]:
        return {"done": max(0, sent.value - queued()), "failed": 0, "wall": None}

    @app.get("/queued")
    def backlog() -> dict[str, int]:
        return {"queued": int(queued())}


def _celery() -> FastAPI:
    import redis

    from . import _celery_app

    noop = _celery_app.noop
    # `delay()` sends to the default queue, which `_celery_app` sets to this run's queue.
    broker = redis.Redis.from_url(_celery_app.BROKER_URL)
    queue = _celery_app.app.conf.task_default_queue
    app = FastAPI()
    add_probe_routes(app)
    sent = _Counter()

    @app.post("/jobs", status_code=202)
    def jobs(kind: str = "noop", count: int = 1) -> dict[str, int]:
        _noop_only(kind)
        for _ in range(count):
            noop.delay()
        sent.add(count)
        return {"accepted": count}

    # Kombu's Redis transport keeps a queue's messages in a list named after it.
    _broker_routes(app, sent, lambda: broker.llen(queue))
    return app


def _rq() -> FastAPI:
    from redis import Redis
    from rq import Queue

    from ._jobs import noop

    redis = Redis.from_url(os.environ["BENCH_REDIS_URL"])
    queue = Queue(os.environ["BENCH_RQ_QUEUE"], connection=redis)
    app = FastAPI()
    add_probe_routes(app)
    sent = _Counter()

    @app.post("/jobs", status_code=202)
    def jobs(kind: str = "noop", count: int = 1) -> dict[str, int]:
        _noop_only(kind)
        for _ in range(count):
            queue.enqueue(noop)
        sent.add(count)
        return {"accepted": count}

    _broker_routes(app, sent, lambda: queue.count)
    return app
