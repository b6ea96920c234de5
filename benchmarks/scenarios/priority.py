"""Scenario `priority`: the process lane's `process_priority` on a quiet host and beside
other load (issue 19). Not part of the full run: `python -m benchmarks --only priority`.

The cpu scenario's load (8 jobs of ~0.5 s of pure-Python CPU, `/health` probed every 5 ms)
under three conditions, alternated within each repeat:

- no tenants: the server alone (the machine may still be busy: see the load average);
- N tenants, same session: N busy loops at nice 0 in the server's session, so in its
  autogroup and cgroup (other processes of the same container or service);
- N tenants, own sessions: the same loops, each in a session of its own (other tenants
  of a host with autogroups, or other containers: the kernel weighs groups first).

Each trial records the 1-minute load average before it starts: the machine is shared.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from .. import _harness as h
from .._jobs import calibrate
from .._scenario import Result, Settings, Stopwatch, medians, paired_ratio, prefixed
from .._scenario import ratio_text as rt
from .._strategies import Strategy, pick

TITLE = "Process lane priority beside other load"
STRATEGIES = [
    "offload-process",  # low, the default
    "offload-process-normal",
    "offload-process-idle",
    "offload-process-worker-slice",
    "offload-process-api-slice",
]
BASE = "offload-process"
# Jobs that cannot finish (SCHED_IDLE workers behind busy loops) end the trial here.
TIMEOUT = 45.0


def _conditions(tenants: int) -> list[tuple[str, int, str]]:
    return [
        ("no tenants", 0, "same"),
        (f"{tenants} tenants, same session", tenants, "same"),
        (f"{tenants} tenants, own sessions", tenants, "own"),
    ]


# Result keys are `<condition id>-<strategy>`, so that pages can quote them through
# `benchmarks.figures` markers (`priority.same-offload-process.wall s`).
IDS = ("none", "same", "own")


def _trials(
    strategies: list[Strategy], conditions: list[tuple[str, int, str]], repeat: int
) -> list[tuple[int, tuple[str, int, str], Strategy]]:
    # Every (condition, strategy) pair once per repeat, the order shifted each repeat.
    pairs = [(c, s) for c in conditions for s in strategies]
    out = []
    for r in range(repeat):
        shift = (r * (len(strategies) + 1)) % len(pairs)
        out += [(r, c, s) for c, s in [*pairs[shift:], *pairs[:shift]]]
    return out


def run(settings: Settings) -> Result:
    clock = Stopwatch()
    jobs = settings.pick(8, 4)
    job_seconds = settings.pick(0.5, 0.2)
    idle_seconds = settings.pick(1.5, 0.5)
    iterations = calibrate(job_seconds)
    strategies = pick(STRATEGIES)
    conditions = _conditions(settings.tenants)
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        c[0]: {s.name: [] for s in strategies} for c in conditions
    }
    total = len(conditions) * len(strategies) * settings.repeat
    for i, (r, (cond, tenants, scope), strategy) in enumerate(
        _trials(strategies, conditions, settings.repeat)
    ):
        step = f"[priority {i + 1}/{total}, repeat {r + 1}] {cond}, {strategy.label}"
        load = os.getloadavg()[0]
        settings.log(f"{step}: starting (load average {load:.2f})")
        with strategy.serve(tenants, scope) as srv:
            try:
                result = h.load_trial(
                    srv,
                    partial(h.post_jobs, srv.url, jobs, {"kind": "cpu", "iterations": iterations}),
                    jobs,
                    idle_seconds=idle_seconds,
                    timeout=TIMEOUT,
                    on_step=prefixed(settings.log, step),
                )
            except TimeoutError as exc:
                settings.log(f"{step}: {exc}")
                runs[cond][strategy.name].append({"load": load, "timed_out": 1.0})
                continue
        idle, loaded = result.idle["/health"], result.loaded["/health"]
        runs[cond][strategy.name].append(
            {
                "load": load,
                "idle_p99": idle.p99,
                "loaded_p50": loaded.p50,
                "loaded_p99": loaded.p99,
                "loaded_max": loaded.max,
                "wall": result.wall,
                "timed_out": 0.0,
            }
        )
        settings.log(
            f"{step}: loaded p99 {h.fmt_ms(loaded.p99)} ms (idle {h.fmt_ms(idle.p99)} ms), "
            f"wall {result.wall:.2f} s"
        )

    rows = []
    summary: dict[str, dict[str, Any]] = {}
    plain: dict[str, list[dict[str, float]]] = {}
    for cid, (cond, _, _) in zip(IDS, conditions, strict=True):
        for s in strategies:
            rs = runs[cond][s.name]
            done = [x for x in rs if not x["timed_out"]]
            m = medians(done) if done else {}
            m["load"] = medians(rs)["load"] if rs else float("nan")
            m["timed_out"] = float(len(rs) - len(done))
            m["p99_vs_low"] = _paired(runs[cond], s.name, "loaded_p99")
            m["wall_vs_low"] = _paired(runs[cond], s.name, "wall")
            summary[f"{cid}-{s.name}"] = m
            plain[f"{cid}-{s.name}"] = runs[cond][s.name]
            nan = float("nan")
            wall = f"{m.get('wall', nan):.2f}" if done else f"> {TIMEOUT:.0f}"
            if done and m["timed_out"]:
                wall += f" ({int(m['timed_out'])} > {TIMEOUT:.0f})"
            rows.append(
                [
                    cond,
                    s.label.removeprefix("OffloadTasks, process lane, ")
                    if s.name != BASE
                    else "priority=low (default)",
                    f"{m['load']:.1f}",
                    h.fmt_ms(m.get("idle_p99", nan)),
                    h.fmt_ms(m.get("loaded_p99", nan)),
                    wall,
                    rt(m["p99_vs_low"]),
                    rt(m["wall_vs_low"]),
                ]
            )
    headers = ["condition", "strategy", "load avg", "idle p99", "loaded p99", "jobs wall s"]
    headers += ["p99 / low", "wall / low"]
    return Result(
        title=TITLE,
        params={
            "jobs": jobs,
            "job_seconds": job_seconds,
            "iterations": iterations,
            "idle_seconds": idle_seconds,
            "probe_interval_ms": 5,
            "repeat": settings.repeat,
            "tenants": settings.tenants,
            "timeout_s": TIMEOUT,
            "latency_unit": "ms",
        },
        table=h.table(headers, rows),
        strategies={key: {"median": m, "runs": plain[key]} for key, m in summary.items()},
        seconds=clock.seconds,
    )


def _paired(runs: dict[str, list[dict[str, float]]], name: str, key: str) -> float:
    # Within one repeat and condition, against `low`; trials that timed out are left out.
    done = {n: [x for x in rs if not x["timed_out"]] for n, rs in runs.items()}
    if len(done.get(name, ())) != len(runs.get(name, ())) or len(done.get(BASE, ())) != len(
        runs.get(BASE, ())
    ):
        return float("nan")
    return paired_ratio(done, name, BASE, key)
