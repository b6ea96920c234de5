"""The warning when the process lanes of a host's processes outnumber its cores (issue 19:
`process_workers` is per process, and `--workers 2` on 2 cores gave 4 CPU workers)."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import anyio
import pytest

from fastapi_offload import Offload
from fastapi_offload.core.host_cores import CoresCheck, host_cores
from fastapi_offload.stores.peers import LaneFigures, ProcessFigures


def process(pid: int, workers: int, *, here: bool = False, host: str = "web-1") -> ProcessFigures:
    lanes = (LaneFigures("thread", 16, 0, 0), LaneFigures("process", workers, 0, 0))
    started = 1000.0 + pid  # the lower pid, the older
    return ProcessFigures(host, pid, started_at=started, at=time.time(), lanes=lanes, here=here)


def check(cores: int, *processes: ProcessFigures) -> str | None:
    return CoresCheck("web-1", cores=lambda: cores, alive=lambda pid: pid != 99).check(processes)


@pytest.mark.anyio
async def test_two_processes_sharing_a_store_warn_once_when_their_workers_outnumber_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)  # 1 core
    store = f"sqlite:///{tmp_path / 'tasks.db'}"

    def worker() -> Offload:  # a web process of `--workers 2`
        return Offload(store=store, store_lease=0.6, process_workers=1)

    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        async with worker():  # alone: 1 worker on 1 core, nothing to say
            await anyio.sleep(0.5)
            assert caplog.records == []
            async with worker():
                with anyio.fail_after(10):
                    while not caplog.records:  # noqa: ASYNC110 - a list the logger fills
                        await anyio.sleep(0.05)
                await anyio.sleep(0.6)  # three more renewals each: still said once
    [warning] = caplog.records
    assert warning.levelname == "WARNING" and warning.name == "fastapi_offload"
    assert warning.getMessage().startswith(
        f"2 processes on host {socket.gethostname()} run 2 process-lane workers in all "
        "(1 + 1: process_workers is per process) on 1 CPU core(s)"
    )
    assert "Set process_workers=1 (OFFLOAD_PROCESS_WORKERS)" in warning.getMessage()


def test_within_the_cores_nothing_is_said() -> None:
    assert check(4, process(1, 2, here=True), process(2, 2)) is None
    assert check(2, process(1, 2, here=True)) is None


def test_other_hosts_and_dead_processes_are_not_counted() -> None:
    mine, dead = process(1, 2, here=True), process(99, 2)  # killed: its figures linger
    elsewhere = process(2, 2, host="web-2")
    assert check(2, mine, dead, elsewhere) is None
    said = check(2, mine, process(3, 1))
    assert said is not None and said.startswith("2 processes on host web-1 run 3 process")


def test_only_the_oldest_process_of_the_host_says_it() -> None:
    younger = process(5, 2, here=True)
    assert check(2, process(1, 2), younger) is None  # pid 1 started first: it says it
    assert check(2, process(9, 2), younger) is not None


def test_the_cores_are_the_ones_this_process_may_use() -> None:
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert host_cores() == (expected or os.cpu_count())
