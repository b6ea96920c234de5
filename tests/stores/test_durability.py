"""A durable store under a real uvicorn: kill -9 and restart, and `--workers 2`.

"Accepted means kept": a task answered with 202 is in the store before the response,
so after a SIGKILL it is run again (declared `requeue=True`) or reported `interrupted`,
never `unknown`; and every worker process answers the same status for it.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis

from fastapi_offload._config import OffloadConfig
from fastapi_offload.core.lifecycle import build_store
from tests.backends.conftest import redis_base_url as redis_base_url  # the fixture
from tests.conftest import StartServer
from tests.helpers import lines

APP = "tests.apps.durable_app:app"
pytestmark = pytest.mark.server


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The same tests on each durable store: a SQLite file, and a real Redis."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'offload.db'}"
    else:
        base = request.getfixturevalue("redis_base_url")
        url = f"{base}/15"
        redis.Redis.from_url(url).flushdb()  # a database of these tests' own
    env = {"OFFLOAD_STORE": url, "OFFLOAD_STORE_LEASE": "1"}
    if request.param == "redis":  # requeue=True tasks on Redis need a signing key
        env["OFFLOAD_SECRET_KEY"] = "durability-tests-secret-key"
    return env


def test_kill_9_then_restart_loses_no_accepted_task(
    start_server: StartServer, tmp_path: Path, store_env: dict[str, str]
) -> None:
    env = store_env
    out = tmp_path / "requeued.txt"
    first = start_server(APP, env=env)
    with first.client() as client:
        naps = client.post("/nap", params={"seconds": 60, "count": 8}).json()
        requeued = [
            client.post("/requeue", params={"seconds": 2, "path": str(out)}).json()
            for _ in range(4)
        ]
        killed_pid = client.get("/pid").json()
    first.kill()  # 12 tasks accepted, none finished

    second = start_server(APP, env=env)
    with second.client() as client:
        restarted_pid = client.get("/pid").json()
    states = {
        task_id: second.wait_for_state(task_id, {"interrupted", "succeeded", "failed"})
        for task_id in naps + requeued
    }
    assert {states[i]["state"] for i in naps} == {"interrupted"}
    assert {states[i]["state"] for i in requeued} == {"succeeded"}
    for task_id in naps:
        assert "stopped" in str(states[task_id]["error"])
    # Each declared task ran again exactly once, in the restarted process.
    assert lines(out) == [str(restarted_pid)] * 4 and restarted_pid != killed_pid
    assert "is run again" in second.log() and "is interrupted" in second.log()


def test_every_worker_answers_the_same_status(
    start_server: StartServer, store_env: dict[str, str]
) -> None:
    server = start_server(APP, env=store_env, args=("--workers", "2"))

    def call(method: str, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        # A new connection each time, several at once: both workers get requests.
        with httpx.Client(base_url=server.url, timeout=10) as client:
            return client.request(method, path, params=params, headers={"Connection": "close"})

    def naps(seconds: float) -> list[tuple[str, str]]:
        with ThreadPoolExecutor(8) as pool:
            answers = pool.map(lambda _: call("POST", "/nap", {"seconds": seconds}), range(20))
            return [(r.json()[0], r.headers["x-worker-pid"]) for r in answers]

    done, running = naps(0), naps(30)
    assert len({pid for _, pid in done + running}) == 2, "one worker took every connection"
    for task_id, _ in done:
        server.wait_for_state(task_id, {"succeeded"})
    created_by = dict(done + running)
    expected = {task_id: {"succeeded"} for task_id, _ in done}
    expected |= {task_id: {"pending", "running"} for task_id, _ in running}
    ids = list(created_by) * 3
    with ThreadPoolExecutor(8) as pool:
        answers = pool.map(lambda i: call("GET", f"/tasks/{i}"), ids[:100])
        reads = list(zip(ids[:100], answers, strict=True))
    wrong = [(i, r.json()["state"]) for i, r in reads if r.json()["state"] not in expected[i]]
    crossed = [i for i, r in reads if r.headers["x-worker-pid"] != created_by[i]]
    assert wrong == [], f"{len(wrong)} of 100 status reads wrong: {wrong[:5]}"
    assert crossed, "no status read reached the other worker"


def test_a_cancel_asked_while_the_owner_was_dead_stops_the_requeued_task_before_it_reruns(
    start_server: StartServer, tmp_path: Path, store_env: dict[str, str]
) -> None:
    out = tmp_path / "requeued.txt"
    first = start_server(APP, env=store_env)
    with first.client() as client:
        task_id = client.post("/requeue-first", params={"seconds": 30, "path": str(out)}).json()
    first.wait_for_state(task_id, {"running"})
    deadline = time.monotonic() + 10
    while not lines(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    first.kill()
    assert len(lines(out)) == 1  # its one start, in the process that died

    # Asked through the shared store while no process owns the task (the owner died).
    store = build_store(OffloadConfig.resolve({"store": store_env["OFFLOAD_STORE"]}))

    async def ask() -> bool:
        await store.open()
        try:
            return await store.request_cancel(task_id)
        finally:
            await store.close()

    assert anyio.run(ask) is True
    second = start_server(APP, env=store_env)
    body = second.wait_for_state(task_id, {"cancelled", "succeeded", "failed"})
    assert (body["state"], body["error"]) == ("cancelled", "cancelled by request")
    assert len(lines(out)) == 1  # reclaimed, but never started again


def wait_until_stored_running(url: str, task_id: str) -> None:
    """Until the store (read by a process of its own, as a status route elsewhere would)
    holds the task's `running` row of attempt 1. A task writes its line as it starts, and
    its row is committed a moment later: killed before that commit, the store would still
    say attempt 0 and its run after the kill would rightly be attempt 1, not 2 (the
    fresh-clone CI once killed first)."""
    store = build_store(OffloadConfig.resolve({"store": url}))

    async def read() -> tuple[str, int] | None:
        await store.open()
        try:
            info = await store.get(task_id)
        finally:
            await store.close()
        return None if info is None else (info.state.value, info.attempts)

    deadline = time.monotonic() + 10
    while (found := anyio.run(read)) != ("running", 1):
        assert time.monotonic() < deadline, f"the store holds {found} for task {task_id}"
        time.sleep(0.05)


def test_a_restart_on_the_same_host_reclaims_a_killed_process_s_tasks_without_waiting_for_the_lease(
    start_server: StartServer, tmp_path: Path, store_env: dict[str, str]
) -> None:
    # The default lease (15 s): the killed process's owner id names this host, boot and
    # pid namespace, and its pid is gone, so the restart reclaims at once.
    env = {**store_env, "OFFLOAD_STORE_LEASE": "15"}
    out = tmp_path / "starts.txt"
    first = start_server(APP, env=env)
    with first.client() as client:
        [nap] = client.post("/nap", params={"seconds": 60}).json()
        rerun = client.post("/requeue-first", params={"seconds": 60, "path": str(out)}).json()
    first.wait_for_state(nap, {"running"})
    first.wait_for_state(rerun, {"running"})
    deadline = time.monotonic() + 10
    while not lines(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    wait_until_stored_running(env["OFFLOAD_STORE"], rerun)
    first.kill()
    killed = time.monotonic()

    second = start_server(APP, env=env)
    interrupted = second.wait_for_state(nap, {"interrupted"}, timeout=7)
    while len(lines(out)) < 2 and time.monotonic() < killed + 7:
        time.sleep(0.02)  # the requeued task's second start, in the restarted process
    took = time.monotonic() - killed
    print(f"reclaimed {took:.2f} s after kill -9 (restart included); the lease is 15 s")
    assert len(lines(out)) == 2, f"the requeue=True task did not start again within {took:.1f} s"
    assert second.wait_for_state(rerun, {"running"})["attempts"] == 2
    assert "no longer runs on this host" in str(interrupted["error"]), interrupted["error"]


def test_a_task_that_takes_its_process_down_as_it_starts_is_not_run_forever(
    start_server: StartServer, tmp_path: Path, store_env: dict[str, str]
) -> None:
    # A requeue=True task is run again after a crash at most 1 + retries times, counted
    # by its attempts in the store. One that kills its process at once must have each
    # attempt counted too: its start is committed before it runs.
    out = tmp_path / "starts.txt"
    first = start_server(APP, env=store_env)
    with first.client() as client:
        task_id = client.post("/requeue-crash", params={"path": str(out)}).json()
    first.process.wait(timeout=10)  # the task killed it
    assert len(lines(out)) == 1
    # Each restart reclaims the task at once (its process is gone from this host) and,
    # while attempts remain, runs it again and is killed (maybe before it is ready).
    # Before its start was committed first, a loaded machine (the fresh-clone CI) saw 3
    # and 4 runs here: the crash beat the commit of the attempt.
    for _ in range(3):
        try:
            server = start_server(APP, env=store_env)
        except AssertionError:  # exited while starting: the task ran again
            continue
        deadline = time.monotonic() + 5
        while server.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.process.poll() is None:
            break  # up for 5 s: it did not run the task again
    else:
        raise AssertionError(f"run again after every restart: {len(lines(out))} runs")
    body = server.wait_for_state(task_id, {"failed"})
    assert "its process stopped during each of its 2 attempts" in str(body["error"]), body
    assert len(lines(out)) == 2  # the first run, and the one run again (retries=0)


def test_a_killed_worker_s_tasks_are_reclaimed_at_once_under_workers_2(
    start_server: StartServer, tmp_path: Path
) -> None:
    # The case that was measured at 15-19 s: one worker of `uvicorn --workers 2` killed;
    # uvicorn starts a new one, and it (or the other worker) takes the tasks at once.
    env = {"OFFLOAD_STORE": f"sqlite:///{tmp_path / 'offload.db'}", "OFFLOAD_STORE_LEASE": "15"}
    server = start_server(APP, env=env, args=("--workers", "2"))
    out = tmp_path / "starts.txt"
    with server.client() as client:
        answer = client.post("/requeue-first", params={"seconds": 60, "path": str(out)})
    task_id, worker = answer.json(), int(answer.headers["x-worker-pid"])
    deadline = time.monotonic() + 10
    while not lines(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lines(out) == [str(worker)]
    wait_until_stored_running(env["OFFLOAD_STORE"], task_id)
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    # Bounded well below the 15 s lease, with room for a loaded machine to start a worker.
    while len(lines(out)) < 2 and time.monotonic() < killed + 10:
        time.sleep(0.02)
    took = time.monotonic() - killed
    print(f"started again {took:.2f} s after kill -9 of a worker; the lease is 15 s")
    assert len(lines(out)) == 2, f"not started again within {took:.1f} s"
    assert lines(out)[1] != str(worker)
    # The new run may write its line before its `running` row (attempt 2) replaces the
    # dead worker's (attempt 1): polled, not read once.
    deadline = time.monotonic() + 10
    while (body := server.wait_for_state(task_id, {"running"}))["attempts"] != 2:
        assert time.monotonic() < deadline, f"{body} (runs by: {lines(out)}, killed: {worker})"
        time.sleep(0.05)
