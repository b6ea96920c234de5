"""Every benchmark figure a page quotes comes from the one results file."""

from __future__ import annotations

import json
import re

import pytest
from benchmarks import figures


def test_every_marked_figure_matches_the_results() -> None:
    assert figures.main(["--check"]) == 0, "run python -m benchmarks.figures"


def test_the_pages_quote_the_cpu_comparison_only_through_markers() -> None:
    # The comparison that used to be quoted three ways (915 / 0.9 ms, 250 / 8 ms, 4.3 ms)
    # is quoted from the results wherever it appears.
    marked = 0
    for page in figures.PAGES:
        text = page.read_text()
        marked += len(figures.MARKER.findall(text))
        bare = figures.MARKER.sub("", text)
        for stale in ("915 ms", "0.9 ms", "250 ms", "in processes, 8 ms"):
            assert stale not in bare or page.name == "README.md", (page.name, stale)
    assert marked >= 20


def test_a_changed_result_rewrites_the_figure_and_a_wrong_key_is_named() -> None:
    results = json.loads(figures.RESULTS.read_text())
    results["scenarios"]["cpu"]["strategies"]["offload-process"]["median"]["loaded_p99"] = 123.4
    text = "p99 <!-- fig cpu.offload-process.loaded_p99 ms -->4.3 ms<!-- /fig -->."
    assert figures.rewrite(text, results) == (
        "p99 <!-- fig cpu.offload-process.loaded_p99 ms -->123 ms<!-- /fig -->."
    )
    with pytest.raises(KeyError, match=re.escape("cpu.nope.wall is not in the results")):
        figures.rewrite("<!-- fig cpu.nope.wall s -->1 s<!-- /fig -->", results)
