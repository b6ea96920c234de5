"""Remote workers for the strategies that need them, started and stopped by the driver.

Each starter returns the worker processes and the environment the app needs to reach
them; the app's warm-up jobs (`Strategy.serve`) tell when they are ready.
"""

from __future__ import annotations

import os
import sys
import uuid

import redis

from ._servers import Service

# A spare database of the local Redis: the suite's keys expire and never meet an app's.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


def celery_worker(processes: int) -> tuple[list[Service], dict[str, str]]:
    """A Celery worker (the `celery` strategy) with `processes` prefork children."""
    queue = _queue("bench-celery")
    argv = [sys.executable, "-m", "celery", "-A", "benchmarks._celery_app", "worker"]
    argv += ["-c", str(processes), "-P", "prefork", "-Q", queue, "-l", "warning"]
    # Gossip, mingle and heartbeats talk to other workers; there are none.
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    env = {"BENCH_REDIS_URL": REDIS_URL, "BENCH_CELERY_QUEUE": queue}
    return [Service(f"celery-{processes}", argv, env)], env


def _queue(prefix: str) -> str:
    # A queue per worker start: nothing left from an earlier run can reach it. The
    # driver's pid in the name lets `forget_queues` find this run's keys.
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def forget_queues() -> int:
    """Delete this run's queue keys (lists, Celery bindings, RQ registries) from Redis.

    Task results and counters expire by themselves. Returns the number of keys deleted.
    """
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        pattern = f"*-{os.getpid()}-*"
        keys = list(client.scan_iter(match=pattern, count=1000))
        queues = list(client.sscan_iter("rq:queues", match=pattern))  # RQ's queue index
        if queues:
            client.srem("rq:queues", *queues)
        return int(client.delete(*keys)) if keys else 0
    except redis.RedisError:
        return 0  # no Redis, so nothing was left there
    finally:
        client.close()


def offload_celery_worker(processes: int) -> tuple[list[Service], dict[str, str]]:
    """A Celery worker for `OFFLOAD_BACKEND=celery`; ready once the app's warm-up is done."""
    queue = _queue("offload-celery")
    env = {
        "OFFLOAD_REDIS_URL": REDIS_URL,
        "OFFLOAD_CELERY_QUEUE": queue,
        "OFFLOAD_BACKEND": "celery",
    }
    argv = [sys.executable, "-m", "celery", "-A", "benchmarks._offload_celery_worker", "worker"]
    argv += ["-c", str(processes), "-P", "prefork", "-Q", queue, "-l", "warning"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return [Service(f"offload-celery-{processes}", argv, env)], env


def offload_rq_workers(processes: int) -> tuple[list[Service], dict[str, str]]:
    """`processes` RQ workers for `OFFLOAD_BACKEND=rq` (each forks a work horse per job)."""
    queue = _queue("offload-rq")
    env = {"OFFLOAD_REDIS_URL": REDIS_URL, "OFFLOAD_RQ_QUEUE": queue, "OFFLOAD_BACKEND": "rq"}
    argv = [sys.executable, "-m", "rq.cli", "worker", "--url", REDIS_URL, "--quiet"]
    argv += ["--worker-class", "benchmarks._offload_rq_worker.Worker", queue]
    return _start_all("offload-rq", argv, env, processes), env


def rq_workers(processes: int) -> tuple[list[Service], dict[str, str]]:
    """`processes` plain `rq worker`s (the dispatch scenario's `rq` peer), as RQ's docs
    start them: the default worker class, which forks a work horse per job."""
    queue = _queue("bench-rq")
    env = {"BENCH_REDIS_URL": REDIS_URL, "BENCH_RQ_QUEUE": queue}
    argv = [sys.executable, "-m", "rq.cli", "worker", "--url", REDIS_URL, "--quiet", queue]
    return _start_all("rq", argv, env, processes), env


def _start_all(name: str, argv: list[str], env: dict[str, str], count: int) -> list[Service]:
    services: list[Service] = []
    try:
        # extend() keeps the services started before a failure, for the cleanup below.
        services.extend(Service(f"{name}-{i}", argv, env) for i in range(count))
    except BaseException:
        for service in services:
            service.stop()
        raise
    return services
