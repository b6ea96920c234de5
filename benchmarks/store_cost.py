"""Store work per task on the request path: the memory, SQLite and Redis stores.

    .venv/bin/python -m benchmarks.store_cost [--n 4000] [--redis redis://127.0.0.1:6379/11]

What a request pays for each task it adds, with the store alone (no HTTP, no lanes):
`put` at admission, then `flush` before the response (a durable store commits the
task there; the memory store's flush is a no-op). "CPU on the loop" is the event
loop thread's CPU time per task: what other requests wait for; "wall" includes the
wait for the writer thread's commit, which concurrent requests share. Rounds
alternate the stores, so load from other processes falls on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from fastapi_offload._models import TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.base import Store
from fastapi_offload.stores.memory import MemoryStore
from fastapi_offload.stores.redis import RedisStore
from fastapi_offload.stores.sqlite import SqliteStore


def _record(task_id: str) -> TaskRecord:
    return TaskRecord(task_id, "jobs.f", "thread", print, (), {}, None, 0, 1.0)


async def _round(store: Store, concurrent: int, count: int, tag: str) -> tuple[float, float]:
    per = count // concurrent
    records = [[_record(f"{tag}-{w}-{i}") for i in range(per)] for w in range(concurrent)]

    async def request(batch: list[TaskRecord]) -> None:
        for record in batch:
            store.put(record)
            await store.flush()

    cpu, wall = time.thread_time(), time.perf_counter()
    await asyncio.gather(*(request(batch) for batch in records))
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    for batch in records:  # finished off the request path, as the runtime would
        for record in batch:
            record.state = TaskState.SUCCEEDED
            store.put(record)
    await store.flush()
    done = per * concurrent
    return wall / done * 1e6, cpu / done * 1e6


async def main(count: int, rounds: int, redis_url: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fastapi-offload-store-cost-"))
    stores: dict[str, Store] = {
        "memory": MemoryStore(10_000),
        "sqlite": SqliteStore(
            str(folder / "offload.db"), owner="bench", lease=30, capacity=10_000, retention=3600
        ),
        "redis": RedisStore(
            redis_url,
            owner="bench",
            lease=30,
            capacity=10_000,
            retention=3600,
            prefix="fastapi_offload_bench",
        ),
    }
    for store in stores.values():
        await store.open()
        await _round(store, 1, 200, "warm")
    print("| store | concurrent requests | wall us/task | CPU on the loop us/task |")
    print("| --- | --- | --- | --- |")
    for concurrent in (1, 8):
        found: dict[str, list[tuple[float, float]]] = {name: [] for name in stores}
        for r in range(rounds):
            for name, store in stores.items():
                found[name].append(await _round(store, concurrent, count, f"{concurrent}-{r}"))
        for name, results in found.items():
            wall = statistics.median(w for w, _ in results)
            cpu = statistics.median(c for _, c in results)
            print(f"| {name} | {concurrent} | {wall:.1f} | {cpu:.1f} |")
    for store in stores.values():
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4000, help="tasks per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11", help="a spare database")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds, args.redis))
