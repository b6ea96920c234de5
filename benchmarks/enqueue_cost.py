"""Median enqueue cost per task: the Celery / RQ backends' `submit` versus the libraries' own calls.

    .venv/bin/python -m benchmarks.enqueue_cost [--n 3000] [--redis redis://127.0.0.1:6379/12]

Against a real Redis, with no worker running (only the enqueue is timed; the queue
is flushed at the end). Each line times one call, sequentially, after a warm-up:

- `CeleryBackend.submit`: awaited on an event loop; includes the hop to a worker
  thread, the SENT marker written to the result store, and the publish.
- Celery `.delay()`: a task on a plain app with the same Redis as broker and result
  store (Celery's default set-up), called directly, on the calling thread; and the
  same with no result store.
- `RQBackend.submit`: awaited; includes the thread hop and the enqueue.
- RQ `queue.enqueue()`: called directly (pickle, RQ's default; and JSON).
- `prepare`: the JSON argument check `add_task` runs in the request.

Lines are measured in interleaved rounds (each round times every line in turn), so
load from other processes spreads over all lines alike. The database given by
`--redis` is flushed before and after: use a spare one.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import redis

from fastapi_offload import TaskCall
from fastapi_offload.backends.celery import CeleryBackend
from fastapi_offload.backends.rq import RQBackend

NAME = "benchmarks.jobs.resize"
ARGS = (42, "/srv/images/cat.png")
KWARGS = {"width": 640, "height": 480, "tags": ["a", "b"]}


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _call() -> TaskCall:
    return TaskCall(id=uuid.uuid4().hex, name=NAME, args=ARGS, kwargs=KWARGS)


def _summary(label: str, samples: list[float]) -> str:
    micro = sorted(sample * 1e6 for sample in samples)
    p90 = micro[int(len(micro) * 0.9)]
    return f"{label:<50} median {statistics.median(micro):8.1f} us   p90 {p90:8.1f} us"


Case = tuple[str, Callable[[], Any], bool]  # label, call, whether it returns an awaitable


async def measure(cases: list[Case], n: int, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Time `n` calls of each case, in `rounds` interleaved rounds, after a warm-up."""
    samples: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for _, func, is_async in cases:
        for _ in range(warmup):
            result = func()
            if is_async:
                await result
    for _ in range(rounds):
        for label, func, is_async in cases:
            times = samples[label]
            for _ in range(n // rounds):
                start = time.perf_counter()
                result = func()
                if is_async:
                    await result
                times.append(time.perf_counter() - start)
    return samples


async def run(url: str, n: int, rounds: int, warmup: int) -> list[str]:
    from celery import Celery
    from rq import Queue

    celery_backend = CeleryBackend(broker_url=url, result_backend=url, queue="bench-celery")
    rq_backend = RQBackend(redis_url=url, queue="bench-rq")
    await celery_backend.start()
    await rq_backend.start()
    apps = []
    cases: list[Case] = [
        ("CeleryBackend.submit (marker + publish)", lambda: celery_backend.submit(_call()), True),
        # The same work without the thread hop, to show where the difference goes.
        (
            "  the same work without the thread hop (Celery)",
            lambda: celery_backend._submit(_call()),
            False,
        ),
    ]
    for label, results in (
        ("celery task.delay() (result store on)", url),
        ("celery task.delay() (no result store)", None),
    ):
        app = Celery("bench", broker=url, backend=results, set_as_current=False)
        app.conf.update(task_default_queue="bench-celery", broker_connection_retry_on_startup=True)
        apps.append(app)
        resize = app.task(name=NAME)(_noop)
        cases.append((label, functools.partial(resize.delay, *ARGS, **KWARGS), False))
    cases += [
        ("RQBackend.submit (enqueue)", lambda: rq_backend.submit(_call()), True),
        ("  the same work without the thread hop (RQ)", lambda: rq_backend._submit(_call()), False),
    ]
    connection = redis.Redis.from_url(url)
    for label, serializer in (
        ("rq queue.enqueue() (pickle, RQ's default)", None),
        ("rq queue.enqueue() (json)", "json"),
    ):
        queue = Queue("bench-rq", connection=connection, serializer=serializer)
        cases.append((label, functools.partial(queue.enqueue, NAME, *ARGS, **KWARGS), False))
    call = _call()
    cases += [
        ("prepare (JSON argument check)", lambda: rq_backend.prepare(call), False),
        ("anyio.to_thread.run_sync hop alone", lambda: anyio.to_thread.run_sync(_noop), True),
    ]
    try:
        samples = await measure(cases, n, rounds, warmup)
    finally:
        await celery_backend.stop()
        await rq_backend.stop()
        for app in apps:
            app.close()
        connection.close()
    return [_summary(label, samples[label]) for label, _, _ in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="timed calls per line")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="spare database")
    options = parser.parse_args()
    # Celery 5.7's Redis result store calls redis-py's deprecated `setex`: not ours to fix.
    warnings.filterwarnings("ignore", "Call to deprecated setex", DeprecationWarning)
    client = redis.Redis.from_url(options.redis)
    client.flushdb()
    try:
        print(
            f"{options.n} calls per line in {options.rounds} interleaved rounds, "
            f"{options.warmup} warm-up, Redis {options.redis}"
        )
        for line in anyio.run(run, options.redis, options.n, options.rounds, options.warmup):
            print(line)
    finally:
        client.flushdb()
        client.close()


if __name__ == "__main__":
    main()
