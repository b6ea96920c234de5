"""Behaviour that depends on the event loop, checked against a real uvicorn server."""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ..conftest import Server, StartServer
from ..helpers import lines

pytestmark = pytest.mark.server

APP = "tests.apps.server_app:app"


def worst_latency(server: Server, path: str, seconds: float) -> float:
    """Probe `path` for `seconds`; the slowest answer, in seconds."""
    worst = 0.0
    with server.client(timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            assert client.get(path).status_code == 200
            worst = max(worst, time.perf_counter() - start)
            time.sleep(0.02)
    return worst


@pytest.mark.timing
def test_health_answers_while_a_5_second_cpu_job_runs(start_server: StartServer) -> None:
    server = start_server(APP, env={"OFFLOAD_PRESTART_WORKERS": "1"})
    with server.client() as client:
        task_id = client.post("/burn", params={"seconds": 5, "lane": "process"}).json()["id"]
    server.wait_for_state(task_id, {"running"})
    # Orders of magnitude only: the job holds a CPU for 5 s, /health stays far under 1 s.
    assert worst_latency(server, "/health", 2.0) < 0.5
    with server.client() as client:
        assert client.get(f"/tasks/{task_id}").json()["state"] == "running"
    assert server.wait_for_state(task_id, {"succeeded", "failed"})["state"] == "succeeded"


@pytest.mark.timing
def test_sync_endpoints_are_not_starved_by_background_threads(start_server: StartServer) -> None:
    server = start_server(APP)
    with server.client() as client:
        # 60 blocking tasks: more than anyio's 40 default threads, which sync endpoints use.
        ids = client.post("/nap", params={"seconds": 3, "count": 60}).json()
    assert len(ids) == 60
    # Our own limiter, not anyio's: 16 run, the rest wait (polled until the threads
    # started, however loaded the machine is).
    deadline = time.monotonic() + 20
    with server.client() as client:
        while (stats := client.get("/stats").json()["lanes"]["thread"])["running"] < 16:
            assert time.monotonic() < deadline, stats
            time.sleep(0.05)
    assert stats["running"] == 16 and stats["waiting"] == 44
    assert worst_latency(server, "/sync", 1.0) < 0.5


def test_background_tasks_do_starve_sync_endpoints(start_server: StartServer) -> None:
    # The problem the package solves, shown on the same server: 45 requests whose
    # BackgroundTasks block anyio's default 40 threads leave sync endpoints waiting.
    server = start_server(APP)

    def post() -> int:
        with server.client() as client:
            return client.post("/nap-background", params={"seconds": 3}).status_code

    with ThreadPoolExecutor(45) as pool:
        assert set(pool.map(lambda _: post(), range(45))) == {200}
    start = time.perf_counter()
    with server.client(timeout=30) as client:
        assert client.get("/sync").status_code == 200
    assert time.perf_counter() - start > 1.0


def test_drop_in_app_without_lifespan(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("tests.apps.dropin_app:app")
    out = tmp_path / "out.txt"
    url = urlsplit(server.url)
    # One keep-alive connection: a failing task must not make the server close it.
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    for path in (f"/work?path={out}", f"/custom-response?path={out}"):
        connection.request("POST", path)
        response = connection.getresponse()
        assert response.status == 200
        response.read()
    connection.close()
    deadline = time.monotonic() + 10
    while len(lines(out)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(line.split()[0] for line in lines(out)) == ["async", "custom", "sync"]
    log = server.wait_for_log("ValueError: this one fails")
    assert "task tests.apps.jobs.fail (id " in log
    assert "Exception in ASGI application" not in log


def test_sigterm_waits_for_running_tasks(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(APP, env={"OFFLOAD_SHUTDOWN_TIMEOUT": "20"})
    out = tmp_path / "out.txt"
    with server.client() as client:
        params: dict[str, str | float] = {"seconds": 2, "path": str(out)}
        task_id = client.post("/nap-then-write", params=params).json()["id"]
    server.wait_for_state(task_id, {"running"})
    assert not out.exists()
    # uvicorn re-raises SIGTERM once it has shut down cleanly: -15 is a clean stop here.
    assert server.stop() in (0, -15)
    log = server.log()
    assert "shutdown: waiting up to 20.0 s for 1 task(s)" in log
    assert "abandoning" not in log
    assert lines(out)[0].startswith("finished")  # the task ended before the process did
    assert "Application shutdown complete" in log


def test_sigterm_abandons_tasks_past_the_timeout_and_logs_them(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(APP, env={"OFFLOAD_SHUTDOWN_TIMEOUT": "0.5"})
    pid_file = tmp_path / "pid"
    with server.client() as client:
        task_id = client.post(
            "/hang", params={"seconds": 60, "timeout": 120, "pid_file": str(pid_file)}
        ).json()["id"]
    server.wait_for_state(task_id, {"running"})
    started = time.monotonic()
    server.stop(timeout=20)
    assert time.monotonic() - started < 15
    log = server.log()
    assert f"task tests.apps.jobs.hang (id {task_id}, process lane): cancelled at shutdown" in log
    # Its worker (and the worker's process group) was killed, not left running.
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _proc_state(pid) not in ("Z", "gone"):
        assert time.monotonic() < deadline, f"worker {pid} still runs after shutdown"
        time.sleep(0.05)


def test_a_crashed_worker_fails_its_task_and_the_api_keeps_serving(
    start_server: StartServer,
) -> None:
    server = start_server(APP)
    with server.client() as client:
        died = client.post("/die").json()["id"]
        info = server.wait_for_state(died, {"succeeded", "failed"})
        assert info["state"] == "failed" and "WorkerCrashed" in str(info["error"])
        assert client.get("/health").status_code == 200
        after = client.post("/burn", params={"seconds": 0.05}).json()["id"]
    assert server.wait_for_state(after, {"succeeded", "failed"})["state"] == "succeeded"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_blocking_async_task_is_reported_on_any_loop(
    start_server: StartServer, loop: str
) -> None:
    server = start_server(APP, loop=loop)
    with server.client() as client:
        task_id = client.post("/block", params={"seconds": 0.3}).json()["id"]
    log = server.wait_for_log("held the event loop")
    assert f"task tests.apps.jobs.block_loop (id {task_id}) held the event loop for" in log
    assert "time.sleep(seconds)" in log  # the stack sampled while the loop was blocked


def test_worker_logs_reach_the_server_log(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(APP)
    with server.client() as client:
        client.post("/write", params={"path": str(tmp_path / "o"), "text": "x"})
    server.wait_for_log("writing x from the worker")


def test_queue_full_is_a_503_under_uvicorn(start_server: StartServer) -> None:
    server = start_server(APP, env={"OFFLOAD_MAX_PENDING": "3", "OFFLOAD_THREAD_WORKERS": "1"})
    with server.client() as client:
        # Admission counts tasks waiting at once, started or not: no wait needed.
        assert client.post("/nap", params={"seconds": 2, "count": 3}).status_code == 200
        response = client.post("/nap", params={"seconds": 1, "count": 3})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "the thread lane is full" in httpx.Response(503, content=response.content).text


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
