"""The alternatives a user would reach for without fastapi-offload, one per `strategy`.

- `bg-async`: `BackgroundTasks` with an `async def` task that calls the job directly;
- `bg-def`: `BackgroundTasks` with a `def` task (anyio's default thread pool);
- `floor`: not an alternative but a reference line: what any collector that detaches its
  tasks from the request pays at least (a FastAPI dependency of its own, and an asyncio
  task per task after the response), with nothing else (`benchmarks.dispatch_profile`);
- `executor`: `loop.run_in_executor(None, job)` (asyncio's default thread pool);
- `anyio`: `anyio.to_process.run_sync(job)` in a task group of the app's lifespan;
- `celery`: `job.apply_async()` to a Celery worker (see `_celery_app`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import anyio.abc
import anyio.to_process
import anyio.to_thread
from fastapi import BackgroundTasks, Depends, FastAPI
from starlette.requests import HTTPConnection

from . import _jobs
from ._calls import add_probe_routes, job_call
from ._tracking import Tracker

STRATEGIES = ("bg-async", "bg-def", "floor", "executor", "anyio", "celery")


def build(strategy: str) -> FastAPI:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}")
    tracker = Tracker()
    group: anyio.abc.TaskGroup | None = None
    futures: set[asyncio.Future[Any]] = set()
    celery = _CeleryClient() if strategy == "celery" else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal group
        async with anyio.create_task_group() as tg:
            group = tg
            if strategy == "anyio" and os.environ.get("BENCH_WARMUP", "1") == "1":
                # Start both workers now, as the process lane's prestart does, so the
                # comparison is of running jobs, not of starting Python twice.
                async with anyio.create_task_group() as warm:
                    for _ in range(os.cpu_count() or 1):
                        warm.start_soon(anyio.to_process.run_sync, _jobs.noop)
            yield
            tg.cancel_scope.cancel()

    app = FastAPI(lifespan=lifespan)
    add_probe_routes(app)

    async def on_loop(func: Callable[..., Any], *args: Any) -> None:
        try:
            func(*args)  # on purpose: the job runs on the event loop
        except Exception:
            tracker.finish(ok=False)
            raise
        tracker.finish()

    def in_thread(func: Callable[..., Any], *args: Any) -> None:
        try:
            func(*args)
        except Exception:
            tracker.finish(ok=False)
            raise
        tracker.finish()

    async def in_process(func: Callable[..., Any], *args: Any) -> None:
        try:
            await anyio.to_process.run_sync(func, *args)
        except Exception:
            tracker.finish(ok=False)
            raise
        tracker.finish()

    def on_future_done(future: asyncio.Future[Any]) -> None:
        futures.discard(future)
        tracker.finish(ok=not future.cancelled() and future.exception() is None)

    if strategy == "floor":

        @app.post("/jobs", status_code=202)
        async def floor_jobs(
            floor: Annotated[_Floor, Depends(_floor)],
            kind: str = "cpu",
            count: int = 1,
            iterations: int = 0,
            seconds: float = 0.0,
            size: int = 0,
        ) -> dict[str, int]:
            func, args = job_call(kind, iterations, seconds, size)
            tracker.accept(count)
            for _ in range(count):
                floor.add(on_loop(func, *args))
            return {"accepted": count}

    else:

        @app.post("/jobs", status_code=202)
        async def jobs(
            background: BackgroundTasks,
            kind: str = "cpu",
            count: int = 1,
            iterations: int = 0,
            seconds: float = 0.0,
            size: int = 0,
        ) -> dict[str, int]:
            func, args = job_call(kind, iterations, seconds, size)
            tracker.accept(count)
            if celery is not None:
                await celery.submit(kind, args, count)
                return {"accepted": count}

            for _ in range(count):
                if strategy == "bg-async":
                    background.add_task(on_loop, func, *args)
                elif strategy == "bg-def":
                    background.add_task(in_thread, func, *args)
                elif strategy == "executor":
                    future = asyncio.get_running_loop().run_in_executor(None, func, *args)
                    futures.add(future)  # the loop keeps only a weak reference
                    future.add_done_callback(on_future_done)
                else:
                    assert group is not None, "lifespan not started"
                    group.start_soon(in_process, func, *args)
            return {"accepted": count}

    @app.post("/batch", status_code=204)
    async def new_batch() -> None:
        tracker.reset()
        if celery is not None:
            celery.new_counter()

    @app.get("/done")
    async def done() -> dict[str, Any]:
        if celery is not None:
            return await celery.state(tracker)
        return tracker.state()

    return app


class _Floor:
    """The `floor` strategy's collector: keeps coroutines, starts an asyncio task for
    each once the response is sent (FastAPI's request exit stack), and nothing else."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: list[Coroutine[Any, Any, None]] = []

    def add(self, call: Coroutine[Any, Any, None]) -> None:
        self.calls.append(call)

    async def __aexit__(self, *exc_info: object) -> bool:
        loop = asyncio.get_running_loop()
        for call in self.calls:
            task = loop.create_task(call)
            _RUNNING.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(_RUNNING.discard)
        return False


_RUNNING: set[asyncio.Task[None]] = set()


async def _floor(conn: HTTPConnection) -> _Floor:
    collector = _Floor()
    conn.scope["fastapi_inner_astack"].push_async_exit(collector)
    return collector


class _CeleryClient:
    """Submits to the Celery worker and reads the counters its tasks leave in Redis."""

    def __init__(self) -> None:
        import redis.asyncio

        from . import _celery_app

        self.task = _celery_app.run
        self.queue = os.environ["BENCH_CELERY_QUEUE"]
        self.redis = redis.asyncio.Redis.from_url(_celery_app.BROKER_URL)
        self.new_counter()

    def new_counter(self) -> None:
        # A fresh key per batch: the worker may outlive several servers.
        self.key = f"{self.queue}:{uuid.uuid4().hex}"

    async def submit(self, kind: str, args: tuple[Any, ...], count: int) -> None:
        if kind == "bytes":
            raise ValueError("the Celery strategy sends JSON: no bytes jobs")

        def send() -> None:
            for _ in range(count):
                self.task.apply_async((kind, list(args), self.key), queue=self.queue)

        # apply_async talks to Redis with a blocking client: never on the loop.
        await anyio.to_thread.run_sync(send)

    async def state(self, tracker: Tracker) -> dict[str, Any]:
        done, last = await self.redis.mget(self.key + ":done", self.key + ":last")
        tracker.report(int(done or 0), None if last is None else float(last))
        return tracker.state()
