"""What `report_progress` costs inside a task, on the loop, thread and process lanes.

    .venv/bin/python -m benchmarks.progress_cost [--n 1000000] [--loop 25:1000000]
        [--loop 250:100000] [--rounds 7] [--json PATH]

The task is `_cost_jobs.spin`: a loop of `n` iterations, each doing `work` steps of
`crunch`'s multiply-add, run once with a `report_progress(i / n)` per iteration and once
without, by a real runtime (no HTTP), in the same round; the task times its own loop.

- Per call: `work` 0 and `--n` calls; (with - without) / n, per round, then the median.
- Tight loop: each `--loop WORK:N` case; slowdown is with / without, per round, then
  the median. The ratio does not depend on N, so the ~10 us case runs fewer iterations
  to keep the run short.
- Store writes: the store's `put`s during the reporting task, less those of the task
  without reports (admission, start, end): the coalescing at work, ~5 per second.

Times are the task thread's CPU time (`time.thread_time`), which does not count the time
other processes on a shared machine held the core (they still share its caches, so it
is not noise-free); wall-clock figures are shown beside them. Rounds
alternate which of the pair runs first. The process lane's parent reads the slot board
every 0.2 s on the event loop: that work is not in the task's time (it is 5 small reads
a second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Absolute imports: a process-lane worker re-imports this main module by path, where a
# relative import has no package to be relative to.
from benchmarks._cost_jobs import spin, spin_on_loop
from benchmarks._stats import table
from fastapi_offload._config import OffloadConfig
from fastapi_offload._context import INTERVAL
from fastapi_offload._models import TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload._settings import TaskSettings
from fastapi_offload.core.lifecycle import Lifecycle
from fastapi_offload.core.runtime import Runtime
from fastapi_offload.stores.memory import MemoryStore

LANES = ("loop", "thread", "process")
DEFAULT_LOOPS = ("25:1000000", "250:100000")

Run = tuple[float, float, int]  # wall s, CPU s, store puts while the task ran


class CountingStore(MemoryStore):
    """The memory store, counting `put` calls: how often the store was written."""

    def __init__(self) -> None:
        super().__init__(10_000)
        self.puts = 0

    def put(self, record: TaskRecord) -> None:
        self.puts += 1
        super().put(record)


async def _task(runtime: Runtime, store: CountingStore, lane: str, args: tuple[Any, ...]) -> Run:
    func: Callable[..., Any] = spin_on_loop if lane == "loop" else spin
    before = store.puts
    # keep_result: the task's own timings come back as its result.
    record = runtime.admit(
        func, args, {}, TaskSettings.of("bench", {"lane": lane, "keep_result": True})
    )
    assert isinstance(record, TaskRecord)  # a handle only for a key some task holds
    runtime.start(record)
    await runtime.ledger.join()
    if record.state is not TaskState.SUCCEEDED or record.result is None:
        raise RuntimeError(f"{lane} lane: {record.state} {record.error}")
    wall, cpu = json.loads(record.result)
    return wall, cpu, store.puts - before


def _spread(values: Sequence[float], digits: int = 0) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


async def measure(
    n: int, loops: Sequence[tuple[int, int]], rounds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Run every case on every lane, `rounds` times; return the cases and the raw runs."""
    store = CountingStore()
    # The defaults, but with workers started up front. Nothing else differs from what
    # an app gets: the report path under test is the same.
    runtime = Runtime(OffloadConfig(prestart_workers=True), None, store)
    lifecycle = Lifecycle(runtime)
    cases = [(0, n), *loops]
    runs: dict[str, dict[str, list[dict[str, Run]]]] = {
        f"{work}:{count}": {lane: [] for lane in LANES} for work, count in cases
    }
    await lifecycle.open(detached=True)
    try:
        for lane in LANES:  # warm-up: threads, workers, imports
            for report in (False, True):
                await _task(runtime, store, lane, (10_000, 5, report))
        for r in range(rounds):
            for work, count in cases:
                for lane in LANES:
                    pair: dict[str, Run] = {}
                    # Alternate which runs first, so neither always gets the warm cache.
                    order = (False, True) if r % 2 == 0 else (True, False)
                    for report in order:
                        key = "with" if report else "without"
                        pair[key] = await _task(runtime, store, lane, (count, work, report))
                    runs[f"{work}:{count}"][lane].append(pair)
            log(f"round {r + 1}/{rounds} done")
    finally:
        await lifecycle.close()
    return {"cases": [list(c) for c in cases], "runs": runs}


def _writes(pairs: Sequence[dict[str, Run]]) -> dict[str, float]:
    """Store writes the reports caused (median over rounds), the reporting task's wall
    time, and the writes the coalescing allows in that time: the first report at once,
    then one per INTERVAL."""
    writes = statistics.median(p["with"][2] - p["without"][2] for p in pairs)
    seconds = statistics.median(p["with"][0] for p in pairs)
    return {"writes": writes, "seconds": seconds, "allowed": 1 + seconds / INTERVAL}


def _writes_text(found: dict[str, float]) -> str:
    return f"{found['writes']:.0f} in {found['seconds']:.2f} s (<= {found['allowed']:.1f})"


def per_call_rows(found: dict[str, Any]) -> tuple[list[list[str]], dict[str, Any]]:
    work, count = found["cases"][0]
    rows, summary = [], {}
    for lane in LANES:
        pairs = found["runs"][f"{work}:{count}"][lane]
        cpu = [(p["with"][1] - p["without"][1]) / count * 1e9 for p in pairs]
        wall = [(p["with"][0] - p["without"][0]) / count * 1e9 for p in pairs]
        writes = _writes(pairs)
        bare = statistics.median(p["without"][1] / count * 1e9 for p in pairs)
        rep = statistics.median(p["with"][1] / count * 1e9 for p in pairs)
        summary[lane] = {
            "calls": count,
            "ns_per_call_cpu": statistics.median(cpu),
            "ns_per_call_wall": statistics.median(wall),
            "store_writes": writes,
        }
        rows.append(
            [
                lane,
                f"{bare:.0f}",
                f"{rep:.0f}",
                f"{statistics.median(cpu):.0f}",
                _spread(cpu),
                f"{statistics.median(wall):.0f}",
                _writes_text(writes),
            ]
        )
    return rows, summary


def loop_rows(found: dict[str, Any]) -> tuple[list[list[str]], dict[str, Any]]:
    rows, summary = [], {}
    for work, count in found["cases"][1:]:
        for lane in LANES:
            pairs = found["runs"][f"{work}:{count}"][lane]
            cpu = [p["with"][1] / p["without"][1] for p in pairs]
            wall = [p["with"][0] / p["without"][0] for p in pairs]
            extra = [(p["with"][1] - p["without"][1]) / count * 1e9 for p in pairs]
            base = statistics.median(p["without"][1] / count * 1e6 for p in pairs)
            rep = statistics.median(p["with"][1] / count * 1e6 for p in pairs)
            summary[f"{lane}:{work}"] = {
                "work": work,
                "iterations": count,
                "us_per_iteration": base,
                "extra_ns_per_iteration": statistics.median(extra),
                "slowdown_cpu": statistics.median(cpu),
                "slowdown_wall": statistics.median(wall),
                "store_writes": _writes(pairs),
            }
            rows.append(
                [
                    lane,
                    f"{work} ({base:.1f} us)",
                    f"{count:,}",
                    f"{rep:.2f}",
                    f"{statistics.median(extra):.0f}",
                    f"{statistics.median(cpu):.3f}x",
                    _spread(cpu, digits=3),
                    f"{statistics.median(wall):.3f}x",
                    _writes_text(summary[f"{lane}:{work}"]["store_writes"]),
                ]
            )
    return rows, summary


def _loop_case(text: str) -> tuple[int, int]:
    work, _, count = text.partition(":")
    try:
        pair = int(work), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WORK:ITERATIONS") from None
    if pair[0] < 0 or pair[1] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: WORK >= 0, ITERATIONS >= 1")
    return pair


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="calls for the per-call cost")
    parser.add_argument(
        "--loop",
        action="append",
        type=_loop_case,
        metavar="WORK:N",
        help=f"a tight-loop case (repeatable; default {' '.join(DEFAULT_LOOPS)})",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the runs and summaries here")
    args = parser.parse_args(argv)
    loops = args.loop or [_loop_case(c) for c in DEFAULT_LOOPS]
    # The runtime's advice ("looks CPU-bound", "blocked the loop") is right about these
    # tasks, and would interleave with the tables.
    logging.getLogger("fastapi_offload").setLevel(logging.ERROR)
    started = time.monotonic()

    def log(text: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {text}", file=sys.stderr, flush=True)

    found = asyncio.run(measure(args.n, loops, args.rounds, log))
    calls, call_summary = per_call_rows(found)
    loop, loop_summary = loop_rows(found)
    print(f"{args.n:,} calls per task, median of {args.rounds} rounds (CPU time of the task)\n")
    headers = [
        "lane",
        "loop without, ns/iter",
        "with report, ns/iter",
        "report_progress ns/call",
        "spread",
        "wall ns/call",
        "store writes in the task's time (allowed)",
    ]
    print(table(headers, calls))
    print()
    headers = [
        "lane",
        "work per iteration",
        "iterations",
        "with report, us/iter",
        "extra ns/iter",
        "slowdown",
        "spread",
        "slowdown (wall)",
        "store writes (allowed)",
    ]
    print(table(headers, loop))
    if args.json is not None:
        found["per_call"], found["loops"] = call_summary, loop_summary
        found["seconds"] = time.monotonic() - started
        args.json.write_text(json.dumps(found, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
