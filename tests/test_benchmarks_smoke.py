"""One tiny scenario of the benchmark suite runs end to end, so the suite cannot rot.

The suite itself is not run in CI: its numbers mean something only on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.server
def test_process_scenario_writes_table_and_json(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "benchmarks", "--quick", "--only", "process"]
    argv += ["--repeat", "1", "--out", str(tmp_path), "--chart", "no"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[process 1/1] OffloadTasks, process lane" in done.stdout  # progress lines
    assert "| OffloadTasks, process lane" in done.stdout  # the table

    document = json.loads((tmp_path / "latest.json").read_text())
    assert len(list(tmp_path.glob("2*.json"))) == 1  # plus the timestamped copy
    assert document["meta"]["cpus"] >= 1
    scenario = document["scenarios"]["process"]
    assert set(scenario["strategies"]) >= {"anyio", "offload-process", "offload-prestart"}
    lane = scenario["strategies"]["offload-process"]["median"]
    # Orders of magnitude: a no-op costs microseconds to milliseconds, not seconds.
    assert 1 < lane["noop_us"] < 100_000
    first = scenario["strategies"]["offload-prestart"]["median"]["first_ms"]
    assert 0 < first < 5_000
    assert all(isinstance(t["met"], bool) for t in scenario["targets"])


def test_chart_renders_from_results(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the chart needs the bench group")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_tiny_results()))
    png = tmp_path / "chart.png"
    argv = [sys.executable, "-m", "benchmarks.chart", str(results), str(png)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _tiny_results() -> dict[str, object]:
    def strategy(label: str, **median: float) -> dict[str, object]:
        return {"label": label, "median": median}

    return {
        "meta": {"started": "2025-01-01T00:00:00+00:00", "cpus": 2, "python": "3.11", "repeat": 1},
        "scenarios": {
            "dispatch": {
                "params": {},
                "strategies": {
                    "bg-async": strategy("BackgroundTasks, async def", rps=5000.0),
                    "offload-loop": strategy("OffloadTasks, loop lane", rps=4800.0),
                },
            },
            "scale": {
                "params": {"jobs": 10, "job_ms": 5.0, "processes": 2},
                "strategies": {"offload-process": strategy("process lane", jobs_per_s=300.0)},
            },
        },
    }
