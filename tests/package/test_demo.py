"""The demo runs end to end in a tiny configuration and prints a table of numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from ..conftest import ROOT


def _row(output: str, label: str) -> list[str]:
    for line in output.splitlines():
        if line.startswith(f"| {label}"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no table row for {label!r} in:\n{output}")


@pytest.mark.timing
@pytest.mark.server
def test_demo_prints_a_table_of_measurements() -> None:
    argv = [sys.executable, "-m", "examples.demo", "--jobs", "2", "--seconds", "0.2"]
    argv += ["--idle-seconds", "0.3", "--modes", "background-async,offload-process"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    # Progress is printed as it goes, mode by mode.
    assert "BackgroundTasks + async def job: starting uvicorn" in done.stdout
    assert "OffloadTasks, process lane: submitting" in done.stdout

    frozen = _row(done.stdout, "BackgroundTasks + async def job")
    offloaded = _row(done.stdout, "OffloadTasks, process lane")
    for row in (frozen, offloaded):
        assert len(row) == 8
        assert all(re.fullmatch(r"\d+(\.\d+)?", cell) for cell in row[1:]), row
        assert float(row[6]) > 0  # the jobs' wall time
    # The machine's other load is measured and explained, whatever it was.
    assert re.search(r"The machine was (quiet|NOT quiet): other processes used", done.stdout)
    # Orders of magnitude only: a 0.2 s job on the loop holds /health for about that
    # long, while the process lane leaves it answering far faster.
    assert float(frozen[5]) > 100  # loaded max, ms
    assert float(offloaded[4]) < 100  # loaded p99, ms


def test_the_demo_counts_another_process_as_other_load() -> None:
    from examples.demo._machine import CpuMeter, verdict

    meter = CpuMeter.start()
    spin = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    worker = subprocess.Popen([sys.executable, "-c", spin])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until it has used 0.5 s of CPU
            with open(f"/proc/{worker.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") >= 0.5:
                break
            time.sleep(0.05)
        # Not reaped yet, so not the demo's own CPU: the meter sees it as other load.
        other = meter.other_cores()
        elapsed = time.monotonic() - meter.started
    finally:
        worker.wait()
    assert other is not None
    assert other * elapsed >= 0.4, (other, elapsed)
    assert "NOT quiet" in verdict(1.0, 2) and "was quiet" in verdict(0.0, 2)
