"""Scenario 6: jobs per second for 1,000 small CPU jobs, process lane versus Celery."""

from __future__ import annotations

from .. import _harness as h
from .._jobs import calibrate
from .._scenario import Result, Settings, Stopwatch, Target, alternate, medians, paired_ratio
from .._scenario import ratio_text as rt
from .._scenario import target_ratio as tr
from .._strategies import pick

TITLE = "Scale: many small CPU jobs"
# Two processes each: the process lane's workers, anyio's default pool on 2 cores,
# `celery worker -c 2`, and the remote backends' workers.
STRATEGIES = ["anyio", "celery", "offload-process", "offload-celery", "offload-rq"]


def run(settings: Settings) -> Result:
    clock = Stopwatch()
    jobs = settings.pick(1000, 100)
    job_ms = 5.0
    iterations = calibrate(job_ms / 1000)
    strategies = pick(STRATEGIES)
    runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in strategies}
    for r, strategy in alternate(strategies, settings.repeat):
        step = f"[scale {r + 1}/{settings.repeat}] {strategy.label}"
        settings.log(f"{step}: starting")
        with strategy.serve() as srv:
            settings.log(f"{step}: {jobs} jobs of ~{job_ms:.0f} ms in one request")
            h.new_batch(srv.url)
            h.post_jobs(srv.url, 1, {"kind": "cpu", "iterations": iterations, "count": jobs})
            state = h.wait_done(srv.url, jobs, timeout=300.0)
        wall = float(state["wall"])
        runs[strategy.name].append({"wall": wall, "jobs_per_s": jobs / wall})
        settings.log(f"{step}: {jobs / wall:.0f} jobs/s")

    summary = {name: medians(rs) for name, rs in runs.items()}
    ideal = 2 / (job_ms / 1000)
    rows = [
        [
            s.label,
            f"{summary[s.name]['jobs_per_s']:.0f}",
            f"{summary[s.name]['wall']:.2f}",
            rt(paired_ratio(runs, s.name, "celery", "jobs_per_s")),
        ]
        for s in strategies
    ]
    targets = []
    if "offload-process" in summary and "celery" in summary:
        ratio = paired_ratio(runs, "offload-process", "celery", "jobs_per_s")
        targets.append(Target("process lane: at least Celery's jobs/s", tr(ratio), ratio >= 1.0))
    return Result(
        title=TITLE,
        params={
            "jobs": jobs,
            "job_ms": job_ms,
            "iterations": iterations,
            "processes": 2,
            "ideal_jobs_per_s": ideal,
            "repeat": settings.repeat,
        },
        table=h.table(["strategy", "jobs/s", "wall s", "vs Celery"], rows),
        strategies={
            s.name: {"label": s.label, "median": summary[s.name], "runs": runs[s.name]}
            for s in strategies
        },
        targets=targets,
        seconds=clock.seconds,
    )
