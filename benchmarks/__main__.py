"""`python -m benchmarks`: run the scenarios, print their tables, write the JSON results.

Usage: python -m benchmarks [--quick] [--only SCENARIO[,SCENARIO]] [--repeat N] [--out DIR]
                            [--strategies NAME[,NAME]] [--shared-session] [--tenants N]
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

from . import _servers, _strategies
from ._scenario import Result, Settings
from ._servers import ROOT, log_dir
from ._strategies import STRATEGIES
from ._workers import forget_queues

SCENARIOS = ("cpu", "blocking", "dispatch", "process", "memory", "scale")
# Run only when named with --only: not part of the full run (nor of its charts).
EXTRA = ("priority",)
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
        help="run only these (repeatable or comma-separated): "
        f"{', '.join(SCENARIOS + EXTRA)} ({', '.join(EXTRA)}: only when named)",
    )
    parser.add_argument("--repeat", type=int, help="runs per strategy (default 3, quick 1)")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"directory for JSON results (default {RESULTS.relative_to(ROOT)}; for "
        f"{', '.join(EXTRA)} alone, a folder of that name in it, so that the full run's "
        "latest.json, which the docs quote, stays)",
    )
    parser.add_argument(
        "--strategies",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these strategies of each scenario (names in benchmarks/_strategies.py)",
    )
    parser.add_argument(
        "--shared-session",
        action="store_true",
        help="run servers and workers in this session (one Linux autogroup) instead of "
        "one session each: beside other load, no strategy gets an extra group's CPU share",
    )
    parser.add_argument(
        "--tenants",
        type=int,
        default=2,
        help="priority scenario: busy-loop processes beside the server (default 2)",
    )
    parser.add_argument(
        "--chart",
        choices=("auto", "yes", "no"),
        default="auto",
        help=f"render the charts {CHART.relative_to(ROOT).with_suffix('')}-*.png "
        "(auto: only after a full run)",
    )
    args = parser.parse_args(argv)
    only = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = sorted(set(only) - set(SCENARIOS + EXTRA))
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS + EXTRA)}"
        )
    args.only = only
    if args.out is None:
        extra_only = bool(only) and set(only) <= set(EXTRA)
        args.out = RESULTS / "-".join(only) if extra_only else RESULTS
    args.strategies = {n.strip() for item in args.strategies for n in item.split(",") if n.strip()}
    wrong = sorted(n for n in args.strategies if n not in STRATEGIES)
    if wrong:
        parser.error(f"unknown strategy(s) {', '.join(wrong)}; choose from {', '.join(STRATEGIES)}")
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if args.tenants < 1:
        parser.error("--tenants must be 1 or more")
    if args.shared_session and sys.version_info < (3, 11):
        parser.error("--shared-session needs Python 3.11 or later (subprocess process_group)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _strategies.ONLY.update(args.strategies)
    _servers.OWN_SESSIONS = not args.shared_session
    names = [n for n in SCENARIOS + EXTRA if n in args.only or (not args.only and n in SCENARIOS)]
    settings = Settings(
        quick=args.quick,
        repeat=args.repeat or (1 if args.quick else 3),
        log=_log,
        tenants=args.tenants,
    )
    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()
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
            "strategies": sorted(args.strategies),
            "shared_session": args.shared_session,
            "load_average": {"start": load_start, "end": os.getloadavg()},
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
        print("\n## Targets\n", flush=True)
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
