"""One tiny scenario of the benchmark suite runs end to end, so the suite cannot rot.

The suite itself is not run in CI: its numbers mean something only on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import ROOT


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


@pytest.mark.server
def test_dispatch_scenario_reports_server_cpu_and_the_rounds_spread(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "benchmarks", "--quick", "--only", "dispatch", "--repeat", "2"]
    argv += ["--strategies", "bg-async,offload-loop", "--out", str(tmp_path), "--chart", "no"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "server CPU us/request" in done.stdout  # the table's column

    scenario = json.loads((tmp_path / "latest.json").read_text())["scenarios"]["dispatch"]
    for name in ("bg-async", "offload-loop"):
        runs = scenario["strategies"][name]["runs"]
        assert len(runs) == 2
        # Orders of magnitude: a request costs the server microseconds, not seconds.
        assert all(1 < run["cpu_us"] < 100_000 for run in runs)
    [target] = scenario["targets"]
    assert "(rounds " in target["value"] and "server CPU per request" in target["value"]


def test_a_missing_peer_is_skipped_with_a_note(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import _strategies
    from benchmarks.scenarios import dispatch

    # None in sys.modules: find_spec reports the module absent, as if not installed.
    monkeypatch.setitem(sys.modules, "fastapi_taskflow", None)
    monkeypatch.setattr(_strategies, "REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    assert _strategies.pick(dispatch.PEERS) == []
    notes = capsys.readouterr().out
    assert "async def task: fastapi_taskflow is not importable" in notes
    assert notes.count("no Redis at redis://127.0.0.1:1/0") == 2  # Celery and RQ


def test_the_taskflow_peer_accepts_no_op_tasks_only() -> None:
    pytest.importorskip("fastapi_taskflow", reason="the peer needs the bench group")
    from benchmarks import _peer_app
    from fastapi.testclient import TestClient

    with TestClient(_peer_app.build("taskflow")) as http:
        assert http.post("/jobs", params={"kind": "noop", "count": 2}).status_code == 202
        assert http.post("/jobs", params={"kind": "cpu"}).status_code == 422


def test_the_floor_line_runs_each_task_after_the_response() -> None:
    # The dispatch scenario's reference line: a dependency of its own and an asyncio
    # task per task; the tasks must really run, or the line would flatter the ceiling.
    from benchmarks import _baseline_app
    from fastapi.testclient import TestClient

    with TestClient(_baseline_app.build("floor")) as http:
        http.post("/batch")
        assert http.post("/jobs", params={"kind": "noop", "count": 3}).status_code == 202
        for _ in range(100):
            if (state := http.get("/done").json())["done"] == 3:
                break
            time.sleep(0.01)
        assert state == {"done": 3, "failed": 0, "wall": state["wall"]} and state["wall"] >= 0


def test_the_statuses_line_keeps_each_task_status_to_its_end() -> None:
    # dispatch_profile's `statuses` line: the floor plus an id and a status per task. Its
    # tasks must run and settle, or it would understate what that bookkeeping costs.
    from benchmarks import dispatch_profile
    from fastapi.testclient import TestClient

    with TestClient(dispatch_profile.statuses()) as http:
        task_id = http.post("/jobs").json()["task"]
        for _ in range(100):
            if dispatch_profile._Statuses.kept.get(task_id) == "succeeded":
                break
            time.sleep(0.01)
        assert dispatch_profile._Statuses.kept[task_id] == "succeeded"
        assert len(task_id) == 32  # the package's own ids


def test_chart_renders_from_results(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the chart needs the bench group")
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_tiny_results()))
    png = tmp_path / "chart.png"
    argv = [sys.executable, "-m", "benchmarks.chart", str(results), str(png)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # One chart per scenario in the results, named after it.
    written = [tmp_path / "chart-dispatch.png", tmp_path / "chart-scale.png"]
    assert done.stdout.split() == [str(path) for path in written]
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in written)


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


def _run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", module, *args]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_progress_cost_prints_both_tables_and_json(tmp_path: Path) -> None:
    out = tmp_path / "progress.json"
    args = ["--n", "2000", "--loop", "3:2000", "--rounds", "2", "--json", str(out)]
    done = _run_module("benchmarks.progress_cost", *args)
    for lane in ("loop", "thread", "process"):
        assert f"| {lane} " in done.stdout  # a row per lane in the tables
    assert "report_progress ns/call" in done.stdout
    assert "3 (" in done.stdout  # the tight-loop case, with its measured work per iteration

    document = json.loads(out.read_text())
    assert set(document["per_call"]) == {"loop", "thread", "process"}
    assert set(document["loops"]) == {"loop:3", "thread:3", "process:3"}
    for lane, runs in document["runs"]["0:2000"].items():
        assert len(runs) == 2, lane  # one pair per round
        # Every reporting task wrote progress to the store, coalesced; no wall-clock claim.
        assert document["per_call"][lane]["store_writes"]["writes"] >= 1


def test_results_cost_prints_every_variant_and_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = _run_module("benchmarks.results_cost", "--n", "40", "--pairs", "2", "--json", str(out))
    assert "wall vs default" in done.stdout
    document = json.loads(out.read_text())
    assert set(document["summary"]) == {
        f"{lane}:{store}:{keep}"
        for lane in ("loop", "thread")
        for store in ("memory", "sqlite")
        for keep in ("default", "keep")
    }
    kept = document["summary"]["thread:sqlite:keep"]
    assert kept["wall_ratio"] > 0 and kept["loop_cpu_ratio"] > 0  # paired with the default
