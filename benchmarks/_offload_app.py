"""The `offload` strategy: `OffloadTasks` on the lane named by `BENCH_LANE`.

`BENCH_LANE` is `loop`, `thread`, `process`, `remote`, or `auto` (no per-call option:
the callable's declaration or kind decides). `BENCH_KEY=1`: each task is added with an
idempotency key of its own (`options(key=...)`, a new key per task, so each is claimed
and none is found held): what a key costs. Everything else is configured the way a user
would, through `OFFLOAD_*` variables.
"""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Any, cast

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks, TaskState
from fastapi_offload._decorators import LaneName

from . import _sched
from ._calls import add_probe_routes, job_call
from ._tracking import Tracker

LANES = ("auto", "loop", "thread", "process", "remote")


def build(lane: str) -> FastAPI:
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}; one of {', '.join(LANES)}")
    # Priority experiments (the `priority` scenario), EEVDF slices on Linux 6.12+:
    # `BENCH_API_SLICE_US` for the API's own thread (this one runs uvicorn's loop), so
    # that it preempts a worker as it wakes; `BENCH_WORKER_SLICE_US` for the process
    # workers, set on every `POST /batch` (the pre-started workers exist by then).
    api_slice = os.environ.get("BENCH_API_SLICE_US")
    worker_slice = int(os.environ.get("BENCH_WORKER_SLICE_US", "0")) * 1000
    if api_slice:
        _sched.set_slice(int(api_slice) * 1000)
    offload = Offload()
    app = FastAPI(lifespan=offload.lifespan)
    # The status routes come after `/jobs` (below): a router matches routes in order,
    # and the baseline app has none to try first.
    add_probe_routes(app)
    tracker = Tracker()
    batch = _Batch()
    # Keys new to every process and every run: a random prefix, then a counter.
    keyed, prefix, numbers = os.environ.get("BENCH_KEY") == "1", uuid.uuid4().hex, itertools.count()

    @app.post("/jobs", status_code=202)
    async def jobs(
        tasks: OffloadTasks,
        kind: str = "cpu",
        count: int = 1,
        iterations: int = 0,
        seconds: float = 0.0,
        size: int = 0,
    ) -> dict[str, int]:
        func, args = job_call(kind, iterations, seconds, size, on_loop=lane == "loop")
        tracker.accept(count)
        # `build` checked the name against LANES above.
        adder = tasks if lane == "auto" else tasks.options(lane=cast(LaneName, lane))
        for _ in range(count):
            if keyed:  # the options a user builds for each keyed call, and the claim
                key = f"{prefix}-{next(numbers)}"
                adder = (
                    tasks.options(key=key)
                    if lane == "auto"
                    else tasks.options(lane=cast(LaneName, lane), key=key)
                )
            batch.ids.append(adder.add_task(func, *args).id)
        return {"accepted": count}

    app.include_router(offload.status_router())

    @app.post("/batch", status_code=204)
    async def new_batch() -> None:
        tracker.reset()
        batch.clear()
        if worker_slice:
            for pid in _sched.workers():
                _sched.set_slice(worker_slice, pid)

    @app.get("/done")
    async def done() -> dict[str, Any]:
        # Walk the batch in submission order and stop at the first unfinished task: jobs
        # finish roughly in order, so each poll costs a few status lookups, not one per job.
        while batch.cursor < len(batch.ids):
            info = await offload.status(batch.ids[batch.cursor])
            if not info.state.finished:
                break
            tracker.finish(ok=info.state is TaskState.SUCCEEDED, at=info.finished_at)
            batch.cursor += 1
        return tracker.state()

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return offload.stats().to_dict()

    return app


class _Batch:
    """Ids of the jobs accepted since `POST /batch` (kept for `/done` only)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.cursor = 0

    def clear(self) -> None:
        self.ids.clear()
        self.cursor = 0


def lane_from_env() -> str:
    return os.environ.get("BENCH_LANE", "auto")
