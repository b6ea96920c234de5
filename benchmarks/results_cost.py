"""What `keep_result` costs per task: `Offload(keep_result=True)` against the default,
on the loop and thread lanes, with the memory and the SQLite store.

    .venv/bin/python -m benchmarks.results_cost [--n 1000] [--pairs 30] [--concurrency 8]
        [--json PATH]

For each lane and store, two runtimes run side by side on one event loop: the default
one and one with `keep_result=True` (SQLite: each its own new database file). They take
turns: a batch of `n` tasks on one, then a batch on the other, `--pairs` times, the
order swapped every pair; each pair gives one ratio (keep / default), and the table
shows medians and the middle half (IQR) of the ratios. Batches a fraction of a second
long, back to back, see the same load from other processes, where two separate runs a
minute apart would not.

A task returns a small dict (`_cost_jobs.small_result`, 68 bytes of JSON); a batch's
tasks are submitted by `--concurrency` coroutines at once (as concurrent requests
would, so a durable store batches their commits as in a server), after a warm-up.
A batch is timed from its first `submit` until every task has finished and the store
has committed it:

- wall us/task (and tasks/s): the whole pipeline, submit to committed result;
- CPU on the loop us/task: the event loop thread's CPU time, what requests wait for
  (the loop lane encodes results there; the thread lane in its worker threads);
- process CPU us/task: every thread of the process (worker threads, SQLite's writer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._cost_jobs import small_result, small_result_on_loop
from benchmarks._stats import percentile, table
from fastapi_offload import Offload, TaskState
from fastapi_offload._decorators import LaneName

LANES: tuple[LaneName, ...] = ("loop", "thread")
STORES = ("memory", "sqlite")
WARMUP = 200
METRICS = ("wall_us", "loop_cpu_us", "process_cpu_us")

Batch = dict[str, float]


async def _submit_all(offload: Offload, lane: LaneName, n: int, concurrency: int) -> str:
    func: Callable[[int], Any] = small_result_on_loop if lane == "loop" else small_result
    options = offload.options(lane=lane)
    last: list[str] = []

    async def submitter(start: int) -> None:
        for i in range(start, n, concurrency):
            handle = await options.submit(func, i)
            last.append(handle.id)
            # A request's end: the loop gets to run tasks between submits (with the
            # memory store, `submit` never suspends on its own).
            await asyncio.sleep(0)

    await asyncio.gather(*(submitter(s) for s in range(concurrency)))
    return last[-1]


async def _batch(offload: Offload, lane: LaneName, n: int, concurrency: int) -> Batch:
    wall, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
    last = await _submit_all(offload, lane, n, concurrency)
    await offload.join()
    # Until the store has the final rows (a durable store writes them in the
    # background): the result's write is part of what keep_result costs.
    await offload._runtime.store.flush()
    wall = time.perf_counter() - wall
    cpu, process = time.thread_time() - cpu, time.process_time() - process
    info = await offload.status(last)
    keep = offload.config.keep_result
    if info.state is not TaskState.SUCCEEDED or (info.result is not None) != keep:
        raise RuntimeError(f"{lane} lane, keep_result={keep}: {info}")  # no numbers then
    return {
        "wall_us": wall / n * 1e6,
        "loop_cpu_us": cpu / n * 1e6,
        "process_cpu_us": process / n * 1e6,
    }


async def run_pairs(
    lane: LaneName, store: str, n: int, pairs: int, concurrency: int, folder: Path
) -> dict[str, list[Batch]]:
    """`pairs` alternating batches on a default runtime and a keep_result one."""

    def url(name: str) -> str:
        return "memory" if store == "memory" else f"sqlite:///{folder / f'{lane}-{name}.db'}"

    # max_pending: the thread lane may fall behind the submitters; a full lane would
    # refuse tasks, which is not what is measured here.
    pending = max(1000, n, WARMUP)
    found: dict[str, list[Batch]] = {"default": [], "keep": []}
    async with (
        Offload(store=url("default"), keep_result=False, max_pending=pending) as default,
        Offload(store=url("keep"), keep_result=True, max_pending=pending) as keep,
    ):
        runtimes = {"default": default, "keep": keep}
        for offload in runtimes.values():
            await _submit_all(offload, lane, WARMUP, concurrency)
            await offload.join()
        for p in range(pairs):
            order = ("default", "keep") if p % 2 == 0 else ("keep", "default")
            for name in order:
                found[name].append(await _batch(runtimes[name], lane, n, concurrency))
    return found


async def measure(
    n: int, pairs: int, concurrency: int, log: Callable[[str], None]
) -> dict[str, dict[str, list[Batch]]]:
    runs = {}
    with tempfile.TemporaryDirectory(prefix="fastapi-offload-results-cost-") as folder:
        for lane in LANES:
            for store in STORES:
                runs[f"{lane}:{store}"] = await run_pairs(
                    lane, store, n, pairs, concurrency, Path(folder)
                )
                log(f"{lane} lane, {store} store: done")
    return runs


def rows(runs: dict[str, dict[str, list[Batch]]]) -> tuple[list[list[str]], dict[str, Any]]:
    out, summary = [], {}
    for key, found in runs.items():
        lane, store = key.split(":")
        for name in ("default", "keep"):
            m = {k: statistics.median(b[k] for b in found[name]) for k in METRICS}
            entry: dict[str, float] = dict(m)
            cells = [
                lane,
                store,
                "True" if name == "keep" else "False",
                f"{1e6 / m['wall_us']:.0f}",
                f"{m['wall_us']:.1f}",
                f"{m['loop_cpu_us']:.1f}",
                f"{m['process_cpu_us']:.1f}",
            ]
            if name == "keep":
                for metric, label in (("wall_us", "wall"), ("loop_cpu_us", "loop_cpu")):
                    ratios = [
                        a[metric] / b[metric]
                        for a, b in zip(found["keep"], found["default"], strict=True)
                    ]
                    entry[f"{label}_ratio"] = statistics.median(ratios)
                    cells.append(f"{entry[f'{label}_ratio']:.3f}x ({_spread(ratios)})")
                diff = [
                    a["loop_cpu_us"] - b["loop_cpu_us"]
                    for a, b in zip(found["keep"], found["default"], strict=True)
                ]
                entry["loop_cpu_extra_us"] = statistics.median(diff)
                cells.append(f"{entry['loop_cpu_extra_us']:+.1f}")
            else:
                cells += ["", "", ""]
            summary[f"{key}:{name}"] = entry
            out.append(cells)
    return out, summary


def _spread(values: Sequence[float]) -> str:
    # The middle half: a burst of load from another process spoils a pair now and then,
    # and min-max would show only those bursts.
    return f"{percentile(values, 25):.2f}-{percentile(values, 75):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="tasks per batch")
    parser.add_argument("--pairs", type=int, default=30, help="batch pairs per lane and store")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent submitters")
    parser.add_argument("--json", type=Path, help="also write the batches and summaries here")
    args = parser.parse_args(argv)
    if args.n < args.concurrency or args.pairs < 1:
        parser.error("--n must be at least --concurrency, and --pairs at least 1")
    logging.getLogger("fastapi_offload").setLevel(logging.ERROR)  # no advice mid-table
    started = time.monotonic()

    def log(text: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {text}", file=sys.stderr, flush=True)

    runs = asyncio.run(measure(args.n, args.pairs, args.concurrency, log))
    found, summary = rows(runs)
    print(
        f"{args.pairs} pairs of {args.n:,}-task batches per lane and store, "
        f"{args.concurrency} concurrent submitters; medians over pairs\n"
    )
    headers = [
        "lane",
        "store",
        "keep_result",
        "tasks/s",
        "wall us/task",
        "CPU on the loop us/task",
        "process CPU us/task",
        "wall vs default (IQR)",
        "loop CPU vs default (IQR)",
        "loop CPU extra us/task",
    ]
    print(table(headers, found))
    if args.json is not None:
        document = {"runs": runs, "summary": summary, "seconds": time.monotonic() - started}
        args.json.write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
