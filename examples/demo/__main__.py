"""`python -m examples.demo`: the event loop under CPU-heavy background work, four ways.

For each mode of `examples/demo/app.py`, the demo starts the app under uvicorn, measures
how fast `GET /health` answers while idle, submits 8 jobs of ~0.5 s of CPU work (one
POST each), and keeps probing `/health` every 5 ms (from a separate process) until the
jobs are done. Then it prints the four modes side by side.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from benchmarks import _harness as h
from benchmarks._jobs import calibrate

from ._machine import CpuMeter, cores, verdict
from .app import MODES
from .jobs import crunch

LABELS = {
    "background-async": "BackgroundTasks + async def job",
    "background-def": "BackgroundTasks + def job",
    "offload-thread": "OffloadTasks, thread lane",
    "offload-process": "OffloadTasks, process lane",
}


def _say(label: str, text: str) -> None:
    print(f"{label}: {text}", flush=True)


def _cores(other: float | None) -> str:
    return "n/a" if other is None else f"{other:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--jobs", type=int, default=8, help="jobs to submit (default 8)")
    parser.add_argument("--seconds", type=float, default=0.5, help="CPU seconds per job")
    parser.add_argument("--idle-seconds", type=float, default=1.0, help="idle probe window")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")

    iterations = calibrate(args.seconds, crunch)
    print(f"{args.jobs} jobs of ~{args.seconds} s of CPU each ({iterations:,} iterations)")
    rows = []
    others: list[float] = []
    for mode in modes:
        label = LABELS[mode]
        print(f"\n{label}: starting uvicorn (DEMO_MODE={mode})", flush=True)
        meter = CpuMeter.start()
        with h.server("examples.demo.app:app", {"DEMO_MODE": mode}) as server:
            result = h.load_trial(
                server,
                partial(h.post_jobs, server.url, args.jobs, {"iterations": iterations}),
                args.jobs,
                idle_seconds=args.idle_seconds,
                batches=False,
                on_step=partial(_say, label),
            )
        other = meter.other_cores()  # read once the server (and its workers) exited
        if other is not None:
            others.append(other)
        idle, loaded = result.idle["/health"], result.loaded["/health"]
        print(
            f"{label}: /health p99 {h.fmt_ms(idle.p99)} ms idle, "
            f"{h.fmt_ms(loaded.p99)} ms loaded; jobs took {result.wall:.2f} s; "
            f"other processes used {_cores(other)} cores",
            flush=True,
        )
        rows.append(
            [
                label,
                h.fmt_ms(idle.p50),
                h.fmt_ms(idle.p99),
                h.fmt_ms(loaded.p50),
                h.fmt_ms(loaded.p99),
                h.fmt_ms(loaded.max),
                f"{result.wall:.2f}",
                _cores(other),
            ]
        )

    headers = ["mode", "idle p50", "idle p99", "loaded p50", "loaded p99", "loaded max"]
    print("\nGET /health latency in ms, while idle and while the jobs ran:\n")
    print(h.table([*headers, "jobs wall s", "other load"], rows))
    print(
        "\nAn async def job freezes the event loop; threads share the GIL with it; worker"
        "\nprocesses leave it free. More: scripts/bench and docs/benchmarks.md."
    )
    count = cores()
    print(
        f"\nother load: cores' worth of CPU used by processes other than the demo's own "
        f"({count} cores here)."
    )
    print(verdict(max(others) if others else None, count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
