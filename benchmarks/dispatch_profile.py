"""Where a request that adds one no-op task spends its time, in process, without HTTP.

    PYTHONPATH=src .venv/bin/python -m benchmarks.dispatch_profile [--n 20000]
        [--clients 8] [--rounds 3] [--profile offload-loop] [--top 15]

ASGI calls straight into a FastAPI app (no server, no sockets, no client), `--clients`
at a time, each `POST /jobs` adding one `async def` no-op task:

- `bg-async`: `BackgroundTasks.add_task(noop)`.
- `floor`: what any collector that detaches its tasks pays at least: a FastAPI
  dependency of its own (FastAPI injects only its own `BackgroundTasks` without one)
  and an asyncio task per task, with nothing else (no id, status, bound or monitor).
- `statuses`: the floor plus the least a lane with ids and statuses does: an id (the
  package's own `IdSource`), a status kept in a dict (pending at `add_task`, running,
  then succeeded or failed by the task's wrapper) and a handle returned; no bound,
  monitor, settings, store interface or lock. Where the loop lane's cost stands between
  the two shows what its layers cost over the bookkeeping itself.
- `offload-loop`: `OffloadTasks.add_task(noop)` (the loop lane, memory store, the app's
  lifespan running).
- `offload-thread`: the same with a `def` no-op, on the thread lane.
- `offload-sqlite`, `offload-redis`: `offload-loop` with a durable store (a new SQLite
  file; the Redis at `BENCH_REDIS_URL`, database 11 by default): each request waits for
  its task's commit, and the CPU time includes the store's writer thread.

Lines alternate in `--rounds` rounds; the median requests/s and CPU time per request
(the process's, all threads) of each are printed, with their ratios to `bg-async`. On a
shared machine the CPU time is the steadier of the two. What the server and the HTTP
parsing cost is left out, so the ratios are lower than those of `python -m benchmarks
--only dispatch`, where both sides pay for them. With `--profile NAME`, one more pass of
that line runs under cProfile and the `--top` entries of fastapi_offload's own functions
are printed by cumulative and by internal time (profiling slows Python code several
fold: compare entries, not totals).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, ClassVar

from fastapi import BackgroundTasks, Depends, FastAPI
from starlette.requests import HTTPConnection

from fastapi_offload import Offload, OffloadTasks
from fastapi_offload.core.ids import IdSource

Message = dict[str, Any]
# The benchmark suite's Redis database (`benchmarks._workers`), for `offload-redis`.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")

SCOPE: Message = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/jobs",
    "raw_path": b"/jobs",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"bench"), (b"content-length", b"0")],
    "client": ("127.0.0.1", 50000),
    "server": ("bench", 80),
}


async def noop_async() -> None:
    return None


def noop() -> None:
    return None


def bg_async() -> FastAPI:
    app = FastAPI()

    @app.post("/jobs", status_code=202)
    async def jobs(tasks: BackgroundTasks) -> dict[str, int]:
        tasks.add_task(noop_async)
        return {"accepted": 1}

    return app


def offload_app(
    func: Callable[[], Any], store: Callable[[], str] | None = None
) -> Callable[[], FastAPI]:
    def build() -> FastAPI:
        # The defaults a user gets, but a queue bound that a burst of clients in one
        # process cannot reach (the tasks run after their responses).
        offload = Offload(max_pending=1_000_000, store=None if store is None else store())
        app = FastAPI(lifespan=offload.lifespan)

        @app.post("/jobs", status_code=202)
        async def jobs(tasks: OffloadTasks) -> dict[str, int]:
            tasks.add_task(func)
            return {"accepted": 1}

        return app

    return build


_RUNNING: set[asyncio.Task[Any]] = set()


class _Floor:
    """The least a detached collector does: a FastAPI dependency that keeps the calls
    and starts an asyncio task for each after the response (no id, status, bound,
    monitor or error handling)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: list[Callable[[], Any]] = []

    def add_task(self, func: Callable[[], Any]) -> None:
        self.calls.append(func)

    async def __aexit__(self, *exc_info: object) -> bool:
        loop = asyncio.get_running_loop()
        for func in self.calls:
            task = loop.create_task(func())
            _RUNNING.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(_RUNNING.discard)
        return False


async def _floor(conn: HTTPConnection) -> _Floor:
    collector = _Floor()
    conn.scope["fastapi_inner_astack"].push_async_exit(collector)
    return collector


class _Statuses(_Floor):
    """`_Floor` plus an id and a status per task (the `statuses` line)."""

    __slots__ = ("ids",)
    new_id: ClassVar[IdSource] = IdSource()
    kept: ClassVar[dict[str, str]] = {}  # every request's, as a store's are

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def add_task(self, func: Callable[[], Any]) -> str:  # type: ignore[override]
        task_id = self.new_id()
        self.kept[task_id] = "pending"
        self.calls.append(func)
        self.ids.append(task_id)
        return task_id

    async def __aexit__(self, *exc_info: object) -> bool:
        loop = asyncio.get_running_loop()
        for task_id, func in zip(self.ids, self.calls, strict=True):
            task = loop.create_task(self._run(task_id, func))
            _RUNNING.add(task)
            task.add_done_callback(_RUNNING.discard)
        return False

    async def _run(self, task_id: str, func: Callable[[], Any]) -> None:
        self.kept[task_id] = "running"
        try:
            await func()
        except Exception:
            self.kept[task_id] = "failed"
        else:
            self.kept[task_id] = "succeeded"
        if len(self.kept) > 10_000:  # bounded, as the memory store is
            self.kept.clear()


async def _statuses(conn: HTTPConnection) -> _Statuses:
    collector = _Statuses()
    conn.scope["fastapi_inner_astack"].push_async_exit(collector)
    return collector


def statuses() -> FastAPI:
    app = FastAPI()

    @app.post("/jobs", status_code=202)
    async def jobs(tasks: Annotated[_Statuses, Depends(_statuses)]) -> dict[str, str]:
        return {"task": tasks.add_task(noop_async)}

    return app


def floor() -> FastAPI:
    app = FastAPI()

    @app.post("/jobs", status_code=202)
    async def jobs(tasks: Annotated[_Floor, Depends(_floor)]) -> dict[str, int]:
        tasks.add_task(noop_async)
        return {"accepted": 1}

    return app


LINES: dict[str, Callable[[], FastAPI]] = {
    "bg-async": bg_async,
    "floor": floor,
    "statuses": statuses,
    "offload-loop": offload_app(noop_async),
    "offload-thread": offload_app(noop),
    "offload-sqlite": offload_app(noop_async, lambda: f"sqlite:///{tempfile.mkdtemp()}/offload.db"),
    "offload-redis": offload_app(noop_async, lambda: REDIS_URL),
}


async def request(app: FastAPI) -> int:
    """One ASGI call; its status code."""
    status = 0
    body_sent = False
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()  # asked for once the body is in: only when it is over
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(SCOPE), receive, send)
    done.set()
    return status


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    lifespan: AbstractAsyncContextManager[Any] = app.router.lifespan_context(app)
    async with lifespan:
        yield


async def load(app: FastAPI, n: int, clients: int) -> tuple[float, float]:
    """Requests per second of `n` requests from `clients` concurrent callers, and the
    process's CPU microseconds per request (all threads; less disturbed by other
    processes on a shared machine than the wall time is)."""
    per_client = n // clients

    async def client() -> None:
        for _ in range(per_client):
            # One loop iteration per request, as a server's read of it from its socket
            # would be: without it a client never yields, and tasks started by its
            # requests run only after all of them.
            await asyncio.sleep(0)
            status = await request(app)
            if status != 202:
                raise RuntimeError(f"answered {status}")

    async with running(app):
        for _ in range(200):  # warm-up: routes, dependency caches
            await request(app)
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client() for _ in range(clients)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    done = per_client * clients
    return done / seconds, cpu / done * 1e6


def profile(name: str, n: int, clients: int, top: int) -> str:
    profiler = cProfile.Profile()
    app = LINES[name]()
    profiler.enable()
    asyncio.run(load(app, n, clients))
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    for order in ("cumulative", "tottime"):
        out.write(f"\n--- {name}: fastapi_offload's top {top} by {order} ---\n")
        stats.sort_stats(order).print_stats("fastapi_offload", top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="requests per line and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated lines (default: all)")
    parser.add_argument("--profile", choices=sorted(LINES), help="then profile this line")
    parser.add_argument("--top", type=int, default=15)
    options = parser.parse_args()
    names = options.only.split(",") if options.only else list(LINES)
    print(f"{options.n} requests per line, {options.clients} clients, {options.rounds} rounds")
    rates: dict[str, list[float]] = {name: [] for name in names}
    costs: dict[str, list[float]] = {name: [] for name in names}
    for r in range(options.rounds):
        for name in names:
            rate, cost = asyncio.run(load(LINES[name](), options.n, options.clients))
            rates[name].append(rate)
            costs[name].append(cost)
            print(
                f"  round {r + 1}: {name:<16} {rate:8.0f} requests/s {cost:7.1f} CPU us/request",
                flush=True,
            )
    base = "bg-async" if "bg-async" in rates else None
    for name in names:
        rate, cost = statistics.median(rates[name]), statistics.median(costs[name])
        line = f"{name:<16} median {rate:8.0f} requests/s {cost:7.1f} CPU us/request"
        if base is not None:
            line += (
                f"   {rate / statistics.median(rates[base]):5.2f}x the requests/s, "
                f"{cost / statistics.median(costs[base]):5.2f}x the CPU of {base}"
            )
        print(line)
    if options.profile:
        print(profile(options.profile, options.n, options.clients, options.top))


if __name__ == "__main__":
    main()
