"""Print a results JSON as Markdown: `python -m benchmarks.report [RESULTS]`.

The tables and target checks exactly as the run printed them, with the run's machine
and versions: what `docs/benchmarks.md` pastes after a full run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
MARKS = {True: "met", False: "**not met**", None: "not measured"}
CHARTS = ("cpu", "blocking", "dispatch", "process", "memory", "scale")


def render(document: dict[str, Any]) -> str:
    meta = document["meta"]
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    lines = [
        f"Run of {meta['started']} (`{meta['command'].strip()}`, {meta['seconds'] / 60:.1f} min):"
        f" {meta['cpus']} CPUs, {meta['platform']}, Python {meta['python']};",
        f"medians of {meta['repeat']} run(s) per strategy. Versions: {versions}.",
    ]
    for name, scenario in document["scenarios"].items():
        lines += ["", f"### {scenario['title']}", ""]
        if name in CHARTS:  # drawn by `python -m benchmarks.chart` from the same run
            lines += [f"![{scenario['title']}](img/benchmarks-{name}.png)", ""]
        lines.append(scenario["table"])
        if scenario["targets"]:
            lines.append("")
            lines += [
                f"- {MARKS[t['met']]}: {t['target']} (this run: {t['value']})"
                for t in scenario["targets"]
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_RESULTS
    print(render(json.loads(path.read_text())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
