"""Scenario 2: `/health` and a sync endpoint while 100 `time.sleep(0.2)` tasks run."""

from __future__ import annotations

from functools import partial
from typing import Any

from .. import _harness as h
from .._scenario import Result, Settings, Stopwatch, Target, alternate, medians, prefixed
from .._scenario import ratio_text as rt
from .._scenario import target_ratio as tr
from .._strategies import pick

TITLE = "Loop responsiveness under blocking I/O load"
# Only strategies that run sync tasks: an `async def` task calling time.sleep would
# freeze the loop for the whole 20 s of sleeping, which scenario 1 already shows.
STRATEGIES = ["bg-def", "executor", "offload-thread"]
PATHS = ("/health", "/sync")


def run(settings: Settings) -> Result:
    clock = Stopwatch()
    tasks = settings.pick(100, 40)
    sleep = settings.pick(0.2, 0.1)
    idle_seconds = settings.pick(1.5, 0.5)
    strategies = pick(STRATEGIES)
    runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in strategies}
    raw: dict[str, list[dict[str, Any]]] = {s.name: [] for s in strategies}
    for r, strategy in alternate(strategies, settings.repeat):
        step = f"[blocking {r + 1}/{settings.repeat}] {strategy.label}"
        settings.log(f"{step}: starting")
        with strategy.serve() as srv:
            result = h.load_trial(
                srv,
                # One request per task, as many users would send them.
                partial(h.post_jobs, srv.url, tasks, {"kind": "sleep", "seconds": sleep}),
                tasks,
                paths=PATHS,
                idle_seconds=idle_seconds,
                count_submission=False,
                on_step=prefixed(settings.log, step),
            )
        numbers: dict[str, float] = {"wall": result.wall, "failed": result.failed}
        for path in PATHS:
            key = path.strip("/")
            idle, loaded = result.idle[path], result.loaded[path]
            numbers |= {
                f"{key}_idle_p99": idle.p99,
                f"{key}_loaded_p50": loaded.p50,
                f"{key}_loaded_p99": loaded.p99,
                f"{key}_loaded_max": loaded.max,
                f"{key}_p99_vs_idle": loaded.p99 / idle.p99,
            }
        runs[strategy.name].append(numbers)
        raw[strategy.name].append(result.as_dict())
        settings.log(
            f"{step}: loaded p99 /health {h.fmt_ms(numbers['health_loaded_p99'])} ms, "
            f"/sync {h.fmt_ms(numbers['sync_loaded_p99'])} ms, wall {result.wall:.2f} s"
        )

    summary = {name: medians(rs) for name, rs in runs.items()}
    rows = []
    for s in strategies:
        m = summary[s.name]
        row = [s.label]
        for key in ("health", "sync"):
            row += [
                h.fmt_ms(m[f"{key}_idle_p99"]),
                h.fmt_ms(m[f"{key}_loaded_p50"]),
                h.fmt_ms(m[f"{key}_loaded_p99"]),
                rt(m[f"{key}_p99_vs_idle"]),
            ]
        rows.append([*row, f"{m['wall']:.2f}"])
    headers = ["strategy"]
    for path in PATHS:
        headers += [f"{path} idle p99", "loaded p50", "loaded p99", "p99 / idle"]
    table = h.table([*headers, "tasks wall s"], rows)

    targets = []
    lane = summary.get("offload-thread")
    if lane is not None:
        for key in ("health", "sync"):
            value = lane[f"{key}_p99_vs_idle"]
            targets.append(Target(f"thread lane: /{key} p99 <= 1.5x idle", tr(value), value <= 1.5))
    return Result(
        title=TITLE,
        params={
            "tasks": tasks,
            "sleep_seconds": sleep,
            "idle_seconds": idle_seconds,
            "repeat": settings.repeat,
            "latency_unit": "ms",
        },
        table=table,
        strategies={
            s.name: {"label": s.label, "median": summary[s.name], "runs": raw[s.name]}
            for s in strategies
        },
        targets=targets,
        seconds=clock.seconds,
    )
