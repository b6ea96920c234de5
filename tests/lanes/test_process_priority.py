"""The process lane's `process_priority`: what each value does to a worker's scheduling.

Each case runs the worker's start-up call (`worker.noop`, what `prestart` sends) in a fresh
interpreter: anyio shares its workers between the lanes of one event loop, and a worker
keeps the first priority it was given, so one test's worker must not serve the next.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastapi_offload.lanes.process import worker

_REPORT = """
import os, sys
from fastapi_offload.lanes.process import worker
worker.noop(sys.argv[1])
policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else -1
print(os.nice(0), policy)
"""


def _scheduling(priority: str) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", _REPORT, priority],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    nice, policy = (int(x) for x in done.stdout.split())
    return nice, policy


def test_normal_leaves_the_worker_as_started() -> None:
    nice, policy = _scheduling("normal")
    assert nice == os.nice(0)
    if hasattr(os, "SCHED_OTHER"):
        assert policy == os.SCHED_OTHER


def test_low_adds_10_to_the_nice_value() -> None:
    nice, _ = _scheduling("low")
    assert nice == min(os.nice(0) + 10, 19)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_idle_puts_the_worker_in_sched_idle() -> None:
    _, policy = _scheduling("idle")
    assert policy == os.SCHED_IDLE


def test_a_worker_keeps_its_first_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    # Raising a nice value back needs privileges most apps do not have (CAP_SYS_NICE):
    # a worker shared with a lane of another priority stays at the first one.
    calls: list[int] = []

    def nice(increment: int) -> int:
        calls.append(increment)
        return increment

    monkeypatch.setattr(worker, "_priority_set", None)
    monkeypatch.setattr(os, "nice", nice)
    worker._set_priority("low")
    worker._set_priority("normal")
    worker._set_priority("low")
    assert calls == [10]
