"""No-op tasks per second through the runner and the thread lane, in one process.

    PYTHONPATH=src .venv/bin/python -m benchmarks.thread_lane_cost [--n 20000] [--rounds 3]
        [--before REF] [--workers 16]

Each line runs `n` no-op `def` tasks through a `Runner` and a lane, as the runtime does
(admitted in the ledger, started, limited by the lane's slots, settled in a memory
store), and reports tasks per second from the first start to the last end, and the
process's CPU time per task (all threads; steadier than the wall time on a shared
machine):

- `thread lane`: the `ThreadLane` of this tree.
- `thread lane at REF` (with `--before REF`): the `ThreadLane` of git revision REF
  (`lanes/thread.py`, or `lanes/local.py` before the split), and the lanes modules it
  used then (its slots, its CPU advisor), loaded beside this tree's.
- `runner only`: a lane that returns at once, behind the same `ThreadSlots` limiter: what
  the runner and the ledger cost per task, the floor any thread lane stands on.

Tasks are started `--burst` at a time, with a loop iteration between bursts (as requests
arriving on a few connections do). Lines alternate in `--rounds` rounds, so load from
other processes spreads over all of them; the median of each is printed. On a shared
machine compare ratios from one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi_offload._record import TaskRecord
from fastapi_offload._results import Kept
from fastapi_offload.core.bounds import LaneBounds
from fastapi_offload.core.ledger import Ledger
from fastapi_offload.core.runner import Runner
from fastapi_offload.lanes.advisor import CpuAdvisor
from fastapi_offload.lanes.base import Lane
from fastapi_offload.lanes.thread import ThreadLane
from fastapi_offload.lanes.thread_slots import ThreadSlots
from fastapi_offload.stores.memory import MemoryStore

ROOT = Path(__file__).resolve().parent.parent


def noop() -> None:
    return None


class RunnerOnly:
    """A lane that runs nothing: the runner's own cost per task."""

    name = "thread"
    timeout_note = ""
    interruptible = False

    def __init__(self, capacity: int) -> None:
        self.limiter = ThreadSlots(capacity)

    async def execute(
        self, record: TaskRecord, kwargs: dict[str, Any] | None = None
    ) -> Kept | None:
        return None


class _AtRevision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports `fastapi_offload._at_REF.X` from `src/fastapi_offload/lanes/X.py` of git
    revision REF: the lanes package as it was (its `..` imports find this tree's
    foundation modules, which the lanes only read records and results from)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.package = f"fastapi_offload._at_{ref.replace('-', '_').replace('/', '_')}"

    def source(self, name: str) -> str | None:
        done = subprocess.run(
            ["git", "show", f"{self.ref}:src/fastapi_offload/lanes/{name}.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        return done.stdout if done.returncode == 0 else None

    def find_spec(
        self, fullname: str, path: Any, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == self.package:
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        if fullname.startswith(self.package + "."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__ == self.package:
            return
        name = module.__name__.rpartition(".")[2]
        source = self.source(name)
        if source is None:
            raise ImportError(f"no lanes/{name}.py at {self.ref}")
        exec(compile(source, f"{self.ref}:lanes/{name}.py", "exec"), module.__dict__)


def lane_at(ref: str) -> Callable[[int], Lane]:
    """The `ThreadLane` of git revision `ref` (`lanes/thread.py`, or `lanes/local.py`
    before the split), with the lanes modules it imports as they were then."""
    finder = _AtRevision(ref)
    sys.meta_path.insert(0, finder)
    name = "thread" if finder.source("thread") is not None else "local"
    cls = importlib.import_module(f"{finder.package}.{name}").ThreadLane
    return lambda workers: cls(workers, CpuAdvisor(), 0)


async def run_once(
    make: Callable[[int], Lane], n: int, workers: int, burst: int
) -> tuple[float, float]:
    """Tasks per second of `n` no-op tasks through a fresh runner and lane, and the
    process's CPU microseconds per task (all threads: the loop's and the workers')."""
    lane = make(workers)
    ledger = Ledger(MemoryStore(n), {"thread": LaneBounds(workers, n)})

    runner = Runner(ledger, {"thread": lane})
    runner.open()
    records = [
        TaskRecord(f"{i:032x}", "noop", "thread", noop, (), {}, None, 0, 0.0) for i in range(n)
    ]
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    for index, record in enumerate(records):
        ledger.admit(record)
        runner.start(record)
        if index % burst == burst - 1:
            await asyncio.sleep(0)
    await ledger.join()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    stats = ledger.lane_stats("thread")
    assert stats.succeeded == n, stats
    await runner.close(1.0)
    return n / seconds, cpu / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="tasks per line and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16, help="thread_workers")
    parser.add_argument("--burst", type=int, default=8, help="tasks started per loop step")
    parser.add_argument("--before", metavar="REF", help="also the thread lane of git REF")
    options = parser.parse_args()
    lines: dict[str, Callable[[int], Lane]] = {}
    if options.before:
        lines[f"thread lane at {options.before}"] = lane_at(options.before)
    lines["thread lane"] = lambda workers: ThreadLane(workers, CpuAdvisor(), 0)
    lines["runner only (no thread)"] = RunnerOnly
    print(
        f"{options.n} no-op tasks per line, thread_workers={options.workers}, "
        f"bursts of {options.burst}, {options.rounds} alternating rounds",
        flush=True,
    )
    rates: dict[str, list[float]] = {label: [] for label in lines}
    costs: dict[str, list[float]] = {label: [] for label in lines}
    for r in range(options.rounds):
        for label, make in lines.items():
            rate, cost = asyncio.run(run_once(make, options.n, options.workers, options.burst))
            rates[label].append(rate)
            costs[label].append(cost)
            print(
                f"  round {r + 1}: {label:<32} {rate:9.0f} tasks/s {cost:6.1f} CPU us/task",
                flush=True,
            )
    first = next(iter(lines))
    base, base_cost = statistics.median(rates[first]), statistics.median(costs[first])
    for label in lines:
        rate, cost = statistics.median(rates[label]), statistics.median(costs[label])
        print(
            f"{label:<32} median {rate:9.0f} tasks/s {cost:6.1f} CPU us/task   "
            f"{rate / base:5.2f}x the tasks/s, {cost / base_cost:5.2f}x the CPU of {first}"
        )


if __name__ == "__main__":
    main()
