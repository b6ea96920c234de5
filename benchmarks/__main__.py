"""`python -m benchmarks`: run the scenarios, print their tables, write the JSON results.

Usage: python -m benchmarks [--quick] [--only SCENARIO[,SCENARIO]] [--repeat N] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ._scenario import Result, Settings
from ._servers import ROOT, log_dir
from ._workers import forget_queues

SCENARIOS = ("cpu", "blocking", "dispatch", "process", "memory", "scale")
RESULTS = ROOT / "benchmarks" / "results"
CHART = ROOT / "docs" / "img" / "benchmarks.png"


def _log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _versions() -> dict[str, str]:
    names = ("fastapi", "starlette", "anyio", "uvicorn", "uvloop", "celery", "redis")
    return {name: _version(name) for name in (*names, "fastapi-offload")}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (~1 min)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help=f"run only these (repeatable or comma-separated): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--repeat", type=int, help="runs per strategy (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for JSON results")
    parser.add_argument(
        "--chart",
        choices=("auto", "yes", "no"),
        default="auto",
        help=f"render the charts {CHART.relative_to(ROOT).with_suffix('')}-*.png "
        "(auto: only after a full run)",
    )
    args = parser.parse_args(argv)
    only = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    args.only = only
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    names = [n for n in SCENARIOS if not args.only or n in args.only]
    settings = Settings(
        quick=args.quick,
        repeat=args.repeat or (1 if args.quick else 3),
        log=_log,
    )
    started = datetime.now(timezone.utc)
    _log(f"benchmarks: {', '.join(names)}; repeat {settings.repeat}; logs in {log_dir()}")
    results: dict[str, Result] = {}
    try:
        for name in names:
            module = importlib.import_module(f"benchmarks.scenarios.{name}")
            _log(f"== {name}: {module.TITLE}")
            result: Result = module.run(settings)
            results[name] = result
            print(f"\n## {result.title}\n\n{result.table}\n", flush=True)
    finally:
        forget_queues()

    document: dict[str, Any] = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "seconds": (datetime.now(timezone.utc) - started).total_seconds(),
            "command": "scripts/bench " + " ".join(sys.argv[1:] if argv is None else argv),
            "quick": settings.quick,
            "repeat": settings.repeat,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "versions": _versions(),
        },
        "scenarios": {name: r.as_dict() for name, r in results.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(document, indent=1) + "\n"
    for path in (args.out / "latest.json", args.out / f"{stamp}.json"):
        path.write_text(text)
    _log(f"results: {args.out / 'latest.json'} and {args.out / f'{stamp}.json'}")

    targets = [t for r in results.values() for t in r.targets]
    if targets:
        print("\n## Targets (issue 5)\n", flush=True)
        for t in targets:
            mark = {True: "met", False: "NOT met", None: "not measured"}[t.met]
            print(f"- {mark}: {t.text} (this run: {t.value})", flush=True)

    full = not settings.quick and not args.only
    if args.chart == "yes" or (args.chart == "auto" and full):
        from .chart import render

        for path in render(args.out / "latest.json", CHART):
            _log(f"chart: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
