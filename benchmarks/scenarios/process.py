"""Scenario 4: per-task cost of the process lane against raw `anyio.to_process.run_sync`,
and the latency of the first task with and without pre-started workers."""

from __future__ import annotations

import time

from .. import _harness as h
from .._scenario import Result, Settings, Stopwatch, Target, alternate, medians, paired_ratio
from .._scenario import ratio_text as rt
from .._scenario import target_ratio as tr
from .._strategies import pick, variant

TITLE = "Per-task cost of the process lane"
MB = 1024 * 1024


FIRST_TASK = [
    variant("offload-process", "offload-prestart", "OffloadTasks, process lane, prestarted"),
    variant(
        "offload-process",
        "offload-cold",
        "OffloadTasks, process lane, not prestarted",
        OFFLOAD_PRESTART_WORKERS="0",
    ),
    variant("anyio", "anyio-cold", "anyio.to_process.run_sync, first call", BENCH_WARMUP="0"),
]


def _batch(url: str, count: int, params: dict[str, str | int | float]) -> float:
    """Seconds the server took from accepting `count` jobs (one request) to finishing them."""
    h.new_batch(url)
    h.post_jobs(url, 1, {**params, "count": count})
    state = h.wait_done(url, count, timeout=300.0, poll=0.005)
    if state["failed"]:
        raise RuntimeError(f"{state['failed']} of {count} jobs failed")
    return float(state["wall"])


def run(settings: Settings) -> Result:
    clock = Stopwatch()
    noops = settings.pick(2000, 200)
    bigs = settings.pick(100, 10)
    strategies = pick(["anyio", "offload-process"])
    runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in strategies}
    for r, strategy in alternate(strategies, settings.repeat):
        step = f"[process {r + 1}/{settings.repeat}] {strategy.label}"
        settings.log(f"{step}: starting")
        with strategy.serve() as srv:
            _batch(srv.url, 50, {"kind": "noop"})  # warm-up, not counted
            settings.log(f"{step}: {noops} no-op tasks")
            noop_wall = _batch(srv.url, noops, {"kind": "noop"})
            settings.log(f"{step}: {bigs} tasks with a 1 MB argument")
            big_wall = _batch(srv.url, bigs, {"kind": "bytes", "size": MB})
        runs[strategy.name].append(
            {"noop_us": noop_wall / noops * 1e6, "mb_ms": big_wall / bigs * 1e3}
        )
        settings.log(
            f"{step}: {runs[strategy.name][-1]['noop_us']:.0f} us per no-op, "
            f"{runs[strategy.name][-1]['mb_ms']:.2f} ms per 1 MB task"
        )

    first: dict[str, list[dict[str, float]]] = {s.name: [] for s in FIRST_TASK}
    for r, strategy in alternate(FIRST_TASK, settings.repeat):
        step = f"[process {r + 1}/{settings.repeat}] first task, {strategy.label}"
        settings.log(f"{step}: starting")
        with strategy.serve() as srv:
            time.sleep(1.0)  # let startup settle: the first task is what is measured
            first[strategy.name].append({"first_ms": _batch(srv.url, 1, {"kind": "noop"}) * 1e3})
        settings.log(f"{step}: {first[strategy.name][-1]['first_ms']:.1f} ms")

    summary = {name: medians(rs) for name, rs in runs.items()}
    first_summary = {name: medians(rs) for name, rs in first.items()}
    rows = []
    for s in strategies:
        m = summary[s.name]
        rows.append(
            [
                s.label,
                f"{m['noop_us']:.0f} us",
                rt(paired_ratio(runs, s.name, "anyio", "noop_us")),
                f"{m['mb_ms']:.2f} ms",
                rt(paired_ratio(runs, s.name, "anyio", "mb_ms")),
            ]
        )
    table = h.table(
        ["strategy", "per no-op task", "vs anyio", "per 1 MB-argument task", "vs anyio"], rows
    )
    first_rows = [[s.label, f"{first_summary[s.name]['first_ms']:.1f}"] for s in FIRST_TASK]
    table += "\n\n" + h.table(["first task after startup", "ms (accepted to finished)"], first_rows)

    targets = []
    if "offload-process" in summary and "anyio" in summary:
        for key, what in (("noop_us", "no-op"), ("mb_ms", "1 MB argument")):
            ratio = paired_ratio(runs, "offload-process", "anyio", key)
            targets.append(
                Target(f"process lane, {what}: <= 1.2x anyio per task", tr(ratio), ratio <= 1.2)
            )
    prestarted = first_summary["offload-prestart"]["first_ms"]
    targets.append(
        Target(
            "process lane: first task with prestarted workers < 10 ms",
            f"{prestarted:.1f} ms",
            prestarted < 10.0,
        )
    )
    return Result(
        title=TITLE,
        params={
            "noop_tasks": noops,
            "mb_tasks": bigs,
            "argument_bytes": MB,
            "process_workers": 2,
            "repeat": settings.repeat,
            "measure": "server-side wall time of a batch submitted in one request / tasks",
        },
        table=table,
        strategies={
            **{
                s.name: {"label": s.label, "median": summary[s.name], "runs": runs[s.name]}
                for s in strategies
            },
            **{
                s.name: {"label": s.label, "median": first_summary[s.name], "runs": first[s.name]}
                for s in FIRST_TASK
            },
        },
        targets=targets,
        seconds=clock.seconds,
    )
