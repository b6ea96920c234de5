"""Scenario 1: `/health` latency while 8 jobs of ~0.5 s of pure-Python CPU work run."""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from .. import _harness as h
from .._jobs import calibrate
from .._scenario import (
    Result,
    Settings,
    Stopwatch,
    Target,
    alternate,
    medians,
    paired_ratio,
    prefixed,
)
from .._scenario import ratio_text as rt
from .._scenario import target_ratio as tr
from .._strategies import pick

TITLE = "Loop responsiveness under CPU-bound load"
STRATEGIES = [
    "bg-async",
    "bg-def",
    "executor",
    "anyio",
    "celery",
    "offload-thread",
    "offload-process",
    "offload-process-normal",
    "offload-process-idle",
    "offload-process-1",
    "offload-celery",  # skipped (with a note) where a backend is not installed
    "offload-rq",
]


def run(settings: Settings) -> Result:
    clock = Stopwatch()
    jobs = settings.pick(8, 4)
    job_seconds = settings.pick(0.5, 0.2)
    idle_seconds = settings.pick(1.5, 0.5)
    iterations = calibrate(job_seconds)
    strategies = pick(STRATEGIES)
    runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in strategies}
    raw: dict[str, list[dict[str, Any]]] = {s.name: [] for s in strategies}
    for r, strategy in alternate(strategies, settings.repeat):
        step = f"[cpu {r + 1}/{settings.repeat}] {strategy.label}"
        load = os.getloadavg()[0]  # the machine is shared: how busy it was
        settings.log(f"{step}: starting (load average {load:.2f})")
        with strategy.serve() as srv:
            cpu_before = srv.cpu_seconds()
            result = h.load_trial(
                srv,
                partial(h.post_jobs, srv.url, jobs, {"kind": "cpu", "iterations": iterations}),
                jobs,
                idle_seconds=idle_seconds,
                on_step=prefixed(settings.log, step),
            )
            # The web process's own CPU over the trial (idle probe included): what the
            # strategy costs the API's process per batch, apart from the jobs.
            server_cpu = srv.cpu_seconds() - cpu_before
        idle, loaded = result.idle["/health"], result.loaded["/health"]
        runs[strategy.name].append(
            {
                "idle_p50": idle.p50,
                "idle_p99": idle.p99,
                "loaded_p50": loaded.p50,
                "loaded_p99": loaded.p99,
                "loaded_max": loaded.max,
                "p99_vs_idle": loaded.p99 / idle.p99,
                "wall": result.wall,
                "failed": result.failed,
                "server_cpu": server_cpu,
                "load": load,
            }
        )
        raw[strategy.name].append(
            {**result.as_dict(), "server_cpu": server_cpu, "load_average": load}
        )
        settings.log(
            f"{step}: loaded p99 {h.fmt_ms(loaded.p99)} ms (idle {h.fmt_ms(idle.p99)} ms), "
            f"wall {result.wall:.2f} s"
        )

    summary = {name: medians(rs) for name, rs in runs.items()}
    rows = []
    for s in strategies:
        m = summary[s.name]
        wall_ratio = paired_ratio(runs, s.name, "anyio", "wall")
        rows.append(
            [
                s.label,
                h.fmt_ms(m["idle_p50"]),
                h.fmt_ms(m["idle_p99"]),
                h.fmt_ms(m["loaded_p50"]),
                h.fmt_ms(m["loaded_p99"]),
                h.fmt_ms(m["loaded_max"]),
                rt(m["p99_vs_idle"]),
                f"{m['wall']:.2f}",
                rt(wall_ratio),
                f"{m['server_cpu']:.2f}",
                f"{m['load']:.1f}",
            ]
        )
    headers = ["strategy", "idle p50", "idle p99", "loaded p50", "loaded p99", "loaded max"]
    headers += ["p99 / idle p99", "jobs wall s", "wall / anyio", "server CPU s", "load avg"]
    table = h.table(headers, rows)
    return Result(
        title=TITLE,
        params={
            "jobs": jobs,
            "job_seconds": job_seconds,
            "iterations": iterations,
            "idle_seconds": idle_seconds,
            "probe_interval_ms": 5,
            "repeat": settings.repeat,
            "latency_unit": "ms",
        },
        table=table,
        strategies={
            s.name: {"label": s.label, "median": summary[s.name], "runs": raw[s.name]}
            for s in strategies
        },
        targets=_targets(summary, runs),
        seconds=clock.seconds,
    )


def _targets(summary: dict[str, dict[str, float]], runs: dict[str, Any]) -> list[Target]:
    lane = summary.get("offload-process")
    if lane is None:
        return []
    targets = [
        Target(
            "process lane: loaded /health p99 <= 1.5x its idle p99",
            tr(lane["p99_vs_idle"]),
            lane["p99_vs_idle"] <= 1.5,
        )
    ]
    for rival in ("anyio", "celery"):
        if rival in summary:
            ratio = paired_ratio(runs, "offload-process", rival, "loaded_p99")
            targets.append(
                Target(
                    f"process lane: loaded /health p99 below {rival}'s",
                    f"{tr(ratio)} of {rival}'s",
                    ratio < 1.0,
                )
            )
    if "anyio" in summary:
        ratio = paired_ratio(runs, "offload-process", "anyio", "wall")
        targets.append(
            Target("process lane: jobs' wall time within 5% of anyio's", tr(ratio), ratio <= 1.05)
        )
    return targets
