"""Every benchmark figure the docs quote, written from one results file.

`python -m benchmarks.figures` rewrites each marked figure in `README.md` and
`docs/*.md` from `benchmarks/results/latest.json`; `--check` only reports the ones that
differ (the test suite runs it, so a page cannot quote a number the results do not
hold). A figure is marked in the Markdown source, invisibly in the rendered page:

    <!-- fig cpu.offload-process.loaded_p99 ms -->4.3 ms<!-- /fig -->

`cpu` is the scenario, `offload-process` the strategy, `loaded_p99` a key of its
`median`, and the last word the unit: `ms` (as the tables print milliseconds) or `s`
(two decimals). A page that quotes a run by hand, outside a marker, is not checked:
quote through a marker.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ._stats import fmt_ms

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
MARKER = re.compile(
    r"<!-- fig (?P<scenario>[\w-]+)\.(?P<strategy>[\w-]+)\.(?P<key>\w+) (?P<unit>ms|s) -->"
    r"(?P<text>.*?)<!-- /fig -->"
)


def figure(results: dict[str, Any], scenario: str, strategy: str, key: str, unit: str) -> str:
    """One figure as the pages show it; `KeyError` names what the results lack."""
    try:
        value = float(results["scenarios"][scenario]["strategies"][strategy]["median"][key])
    except KeyError:
        raise KeyError(
            f"{scenario}.{strategy}.{key} is not in the results: check the marker's "
            "scenario, strategy and key against benchmarks/results/latest.json"
        ) from None
    return f"{fmt_ms(value)} ms" if unit == "ms" else f"{value:.2f} s"


def rewrite(text: str, results: dict[str, Any]) -> str:
    def one(match: re.Match[str]) -> str:
        shown = figure(results, match["scenario"], match["strategy"], match["key"], match["unit"])
        opening = match.group(0)[: match.start("text") - match.start(0)]
        return f"{opening}{shown}<!-- /fig -->"

    return MARKER.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.figures", description=__doc__)
    parser.add_argument("--check", action="store_true", help="report stale figures only")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    stale = []
    for page in PAGES:
        text = page.read_text()
        new = rewrite(text, results)
        if new != text:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(new)
    verb = "out of date" if args.check else "rewritten"
    for page in stale:
        print(f"{page}: figures {verb} (from {args.results.name})")
    if args.check and stale:
        print("run `python -m benchmarks.figures` to write them from the results")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
