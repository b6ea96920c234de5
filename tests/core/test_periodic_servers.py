"""Periodic tasks under real uvicorn servers (issue 18's "done means"): a 1-second task
over 10 s on `--workers 2` sharing a SQLite file runs 9-11 times, not 18-22, and keeps
running when a worker is killed; two servers sharing a real Redis, the same; and the
memory store under `--workers 2` says at start-up that each worker runs every tick."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.backends.conftest import redis_base_url as redis_base_url  # the fixture
from tests.conftest import Server, StartServer

APP = "tests.apps.periodic_app:app"
WINDOW = 10.0  # seconds counted: 10 ticks of a 1-second task
WORKERS_WARNING = (
    "the task store is memory, so each of the 2 worker processes of this server runs "
    "every tick of them"
)
pytestmark = pytest.mark.server


def runs(path: Path, start: float, end: float) -> list[tuple[int, float]]:
    """The runs (pid, when) the app appended whose start falls in [start, end)."""
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        pid, when = line.split()
        if start <= float(when) < end:
            found.append((int(pid), float(when)))
    return found


def started_pids(server: Server, count: int) -> list[int]:
    """The pids of the first `count` processes whose Offload started (from the log)."""
    deadline = time.monotonic() + 30
    while len(found := re.findall(r"started in process (\d+)", server.log())) < count:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    return [int(pid) for pid in found[:count]]


def count_over(path: Path, seconds: float) -> tuple[list[tuple[int, float]], float]:
    start = time.time()
    time.sleep(seconds)
    return runs(path, start, start + seconds), start


def wait_for_a_run(path: Path, server: Server) -> None:
    deadline = time.monotonic() + 20
    while not runs(path, 0, float("inf")):
        assert time.monotonic() < deadline, f"no periodic run within 20 s:\n{server.log()}"
        time.sleep(0.05)


@pytest.fixture
def ticks(tmp_path: Path) -> Path:
    return tmp_path / "ticks.txt"


def test_two_workers_sharing_a_sqlite_file_run_each_tick_once_and_survive_a_kill(
    start_server: StartServer, tmp_path: Path, ticks: Path
) -> None:
    env = {
        "OFFLOAD_STORE": f"sqlite:///{tmp_path / 'offload.db'}",
        "OFFLOAD_TEST_TICKS": str(ticks),
        # A worker killed while its run was live holds that run (and so, as an overlap,
        # the next ticks) until it is reclaimed: within a lease.
        "OFFLOAD_STORE_LEASE": "2",
    }
    server = start_server(APP, env=env, args=("--workers", "2"))
    pids = started_pids(server, 2)
    wait_for_a_run(ticks, server)
    counted, _ = count_over(ticks, WINDOW)
    assert 9 <= len(counted) <= 11, f"{len(counted)} runs in {WINDOW:g} s: {counted}"
    assert WORKERS_WARNING not in server.log()

    # Kill the worker that ran the last tick, as the OOM killer would.
    victim = counted[-1][0]
    assert victim in pids
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    after, start = count_over(ticks, 6.0)
    assert 3 <= len(after) <= 7, f"{len(after)} runs in 6 s after the kill: {after}"
    assert victim not in {pid for pid, when in after if when > killed_at}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        [info] = client.get("/schedules").json()
    assert info["last_state"] in ("succeeded", "running", "pending"), info
    assert info["last_run"] >= start and info["schedule"] == "every 1 s"


@pytest.mark.redis
def test_two_servers_sharing_a_redis_run_each_tick_once(
    start_server: StartServer, ticks: Path, redis_base_url: str
) -> None:
    url = f"{redis_base_url}/11"  # a database of this test's own
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        env = {"OFFLOAD_STORE": url, "OFFLOAD_TEST_TICKS": str(ticks)}
        servers = [start_server(APP, env=env) for _ in range(2)]
        pids = [started_pids(server, 1)[0] for server in servers]
        wait_for_a_run(ticks, servers[0])
        counted, _ = count_over(ticks, WINDOW)
    finally:
        client.flushdb()
        client.close()
    assert 9 <= len(counted) <= 11, f"{len(counted)} runs in {WINDOW:g} s: {counted}"
    assert {pid for pid, _ in counted} <= set(pids)


def test_with_the_memory_store_each_of_two_workers_runs_every_tick_and_says_so(
    start_server: StartServer, ticks: Path
) -> None:
    # What the two tests above prevent, and the start-up warning that names it.
    env = {"OFFLOAD_TEST_TICKS": str(ticks), "OFFLOAD_TEST_EVERY": "0.5"}
    server = start_server(APP, env=env, args=("--workers", "2"))
    started_pids(server, 2)
    wait_for_a_run(ticks, server)
    counted, _ = count_over(ticks, 4.0)
    assert len(counted) >= 14, f"{len(counted)} runs in 4 s: {counted}"  # 8 ticks, each twice
    assert server.log().count(WORKERS_WARNING) == 2, server.log()
    assert "periodic tasks tests.apps.periodic_app.append_tick: the task store is memory" in (
        server.log()
    )


@pytest.mark.parametrize("args", [(), ("--reload",)], ids=["one process", "reload"])
def test_one_worker_process_gives_no_warning(
    start_server: StartServer, ticks: Path, args: tuple[str, ...]
) -> None:
    # `--reload` runs the app in a process its supervisor spawned, as `--workers` does:
    # its config says one worker.
    env = {"OFFLOAD_TEST_TICKS": str(ticks), "OFFLOAD_TEST_EVERY": "60"}
    server = start_server(APP, env=env, args=args)
    started_pids(server, 1)
    assert "the task store is memory" not in server.log()
