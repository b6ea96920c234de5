"""The process lane's `process_priority`: what each value does to a worker's scheduling.

Each case runs the worker's start-up call (`worker.noop`, what `prestart` sends) in a fresh
interpreter: anyio shares its workers between lanes of one event loop, and a worker keeps
the first priority it was given.
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
try:
    slice_ns = worker.get_slice()
except OSError:
    slice_ns = -1
print(os.nice(0), policy, slice_ns)
"""


def _scheduling(priority: str) -> tuple[int, int, int]:
    done = subprocess.run(
        [sys.executable, "-c", _REPORT, priority],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    nice, policy, slice_ns = (int(x) for x in done.stdout.split())
    return nice, policy, slice_ns


def _default_slice() -> int:
    try:
        return worker.get_slice()
    except OSError:
        return -1


def _slices_supported() -> bool:
    # Custom slices (Linux 6.12+) read back as set; older kernels ignore them.
    return _scheduling("yield")[2] == worker.LONG_SLICE_NS


def test_normal_leaves_the_worker_as_started() -> None:
    nice, policy, slice_ns = _scheduling("normal")
    assert nice == os.nice(0) and slice_ns == _default_slice()
    if hasattr(os, "SCHED_OTHER"):
        assert policy == os.SCHED_OTHER


def test_low_adds_10_to_the_nice_value() -> None:
    nice, _, _ = _scheduling("low")
    assert nice == min(os.nice(0) + 10, 19)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_idle_puts_the_worker_in_sched_idle() -> None:
    _, policy, _ = _scheduling("idle")
    assert policy == os.SCHED_IDLE


@pytest.mark.skipif(not _slices_supported(), reason="no custom EEVDF slices (Linux 6.12+)")
def test_yield_keeps_the_nice_value_and_takes_the_longest_slice() -> None:
    nice, policy, slice_ns = _scheduling("yield")
    assert nice == os.nice(0) and policy == os.SCHED_OTHER
    assert slice_ns == worker.LONG_SLICE_NS


def test_yield_where_slices_are_missing_is_normal(monkeypatch: pytest.MonkeyPatch) -> None:
    # In this process, as a worker would run it: no sched_setattr, no error, nice unchanged.
    monkeypatch.setattr(worker, "_sched_calls", lambda: None)
    monkeypatch.setattr(worker, "_priority_set", None)
    before = os.nice(0)
    worker._set_priority("yield")
    assert os.nice(0) == before and worker._priority_set == "yield"
