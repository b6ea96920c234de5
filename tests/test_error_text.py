"""Bounded sizes and worker lifetime (issue 15, findings 3, 5 and 6), against a real
uvicorn with a SQLite store: error text is capped and its URL passwords masked, a large
result is refused without encoding it whole, and process workers die with the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import Server, StartServer

pytestmark = pytest.mark.server

APP = "tests.apps.bounds_app:app"
LIMIT = 4096  # characters of kept error text (`_error_text.LIMIT`)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def _wait_for_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} not written within {timeout} s"
        time.sleep(0.05)
    return path.read_text()


def _sqlite(tmp_path: Path) -> dict[str, str]:
    return {"OFFLOAD_STORE": f"sqlite:///{tmp_path / 'offload.db'}"}


# -- error text ---------------------------------------------------------------------


def test_error_text_caps_and_masks() -> None:
    from fastapi_offload._error_text import error_text, mask, scrub_args

    text = error_text(ValueError("x" * 10_000_000))
    assert text.startswith("ValueError('xxx") and len(text) < LIMIT + 100
    assert text.endswith("… [truncated, 10.0 M characters in all]")
    assert error_text("postgres://app:S3cr3tPW@db/prod") == "postgres://app:***@db/prod"
    assert mask("redis://:pw@host:6379/0 and https://u:p@x/y") == (
        "redis://:***@host:6379/0 and https://u:***@x/y"
    )
    assert mask("http://host:8080/path") == "http://host:8080/path"  # no credentials
    # A password cut by the cap is masked too.
    cut = error_text("y" * (LIMIT - 20) + " postgres://app:S3cr3tPW@db/prod")
    assert "S3cr" not in cut and "postgres://app:***" in cut
    exc = RuntimeError("z" * 100_000, "postgres://a:b@c/d", 3)
    scrub_args(exc)
    assert len(exc.args[0]) < LIMIT + 100 and exc.args[1:] == ("postgres://a:***@c/d", 3)


@pytest.mark.parametrize("lane", ["thread", "process"])
def test_a_10_mb_error_is_kept_capped(start_server: StartServer, tmp_path: Path, lane: str) -> None:
    # Was: the whole 10 MB stored in SQLite and served by every GET.
    server = start_server(APP, env=_sqlite(tmp_path))
    with server.client() as client:
        params: dict[str, str | int] = {"size": 10_000_000, "lane": lane}
        task_id = client.post("/raise-big", params=params).json()["id"]
    body = server.wait_for_state(task_id, {"failed"})
    error = str(body["error"])
    assert error.startswith("ValueError('xxxx") and "[truncated, 10.0 M characters" in error
    with server.client() as client:
        assert len(client.get(f"/tasks/{task_id}").content) < 2 * LIMIT
    assert os.path.getsize(tmp_path / "offload.db") + _wal(tmp_path) < 2_000_000
    assert len(server.log()) < 200_000  # the log line is bounded too


def _wal(tmp_path: Path) -> int:
    wal = tmp_path / "offload.db-wal"
    return wal.stat().st_size if wal.exists() else 0


@pytest.mark.parametrize("lane", ["loop", "thread", "process"])
def test_url_passwords_are_masked(start_server: StartServer, tmp_path: Path, lane: str) -> None:
    server = start_server(APP, env=_sqlite(tmp_path))
    with server.client() as client:
        task_id = client.post("/raise-secret", params={"lane": lane}).json()["id"]
    body = server.wait_for_state(task_id, {"failed"})
    assert "postgres://app:***@db/prod" in str(body["error"])
    server.wait_for_log("postgres://app:***@db/prod")
    assert "S3cr3tPW" not in server.log()
    assert b"S3cr3tPW" not in (tmp_path / "offload.db").read_bytes()
    wal = tmp_path / "offload.db-wal"
    assert not wal.exists() or b"S3cr3tPW" not in wal.read_bytes()


# -- results ------------------------------------------------------------------------

_PEAK = """
import asyncio, json, resource, sys
from fastapi_offload import Offload

def large():
    return [[1] * 1000] * 100_000  # ~200 MB of JSON, ~1 MB in memory

async def main():
    offload = Offload(keep_result=True, result_max_bytes=1_000_000)
    async with offload.lifespan(None):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        handle = await offload.options(lane="thread").submit(large)
        await offload.join()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        info = await offload.status(handle.id)
    print(json.dumps({"growth_kb": after - before, "error": info.error}))

asyncio.run(main())
"""


def test_a_large_result_is_refused_without_encoding_it_whole(tmp_path: Path) -> None:
    # Was: the whole 200 MB text was made, then compared with the limit.
    script = tmp_path / "peak.py"
    script.write_text(textwrap.dedent(_PEAK))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "too large" in found["error"]
    assert found["growth_kb"] < 50_000, found  # the text alone is 200,000 kB


@pytest.mark.timing
def test_health_answers_while_a_large_result_is_refused(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Was: the C encoder held the GIL for seconds in the worker thread, /health froze.
    server = start_server(APP, env={**_sqlite(tmp_path), "OFFLOAD_RESULT_MAX_BYTES": "1000000"})
    with server.client() as client:
        client.get("/health")
        with ThreadPoolExecutor(1) as pool:
            probe = pool.submit(_worst, server, 4.0)
            time.sleep(0.3)
            task_id = client.post("/large-result", params={"rows": 200_000}).json()["id"]
            worst = probe.result()
    body = server.wait_for_state(task_id, {"succeeded", "failed"})
    assert body["state"] == "succeeded" and "too large" in str(body["error"])
    assert worst < 1.0, worst  # was 4-10 s with a 400 MB text


def _worst(server: Server, seconds: float) -> float:
    worst = 0.0
    with server.client(timeout=60) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            assert client.get("/health").status_code == 200
            worst = max(worst, time.perf_counter() - start)
            time.sleep(0.02)
    return worst


# -- process workers ----------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_workers_die_with_a_killed_server(start_server: StartServer, tmp_path: Path) -> None:
    # Was: after kill -9 of uvicorn, the worker ran on and wrote its file ~2 s later.
    server = start_server(APP)
    out, pid_file = tmp_path / "out.txt", tmp_path / "worker.pid"
    with server.client() as client:
        client.post(
            "/sleep-then-write",
            params={"seconds": 3, "path": str(out), "pid_file": str(pid_file)},
        )
    worker = int(_wait_for_file(pid_file))
    assert _alive(worker)
    server.kill()
    deadline = time.monotonic() + 3
    while _alive(worker):
        assert time.monotonic() < deadline, "the worker outlived its server"
        time.sleep(0.05)
    time.sleep(4)  # past the task's end: it must never write
    assert not out.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_timeout_kills_children_in_a_session_of_their_own(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Was: TaskTimeout said the processes it started were killed; this one lived on.
    server = start_server(APP)
    pid_file = tmp_path / "child.pid"
    with server.client() as client:
        task_id = client.post(
            "/child-in-new-session", params={"pid_file": str(pid_file), "timeout": 3}
        ).json()["id"]
    child = int(_wait_for_file(pid_file))
    try:
        body = server.wait_for_state(task_id, {"failed"})
        assert "TaskTimeout" in str(body["error"])
        assert "the processes it started were killed" in str(body["error"])
        deadline = time.monotonic() + 3
        while _alive(child):
            assert time.monotonic() < deadline, "the task's child outlived the timeout"
            time.sleep(0.05)
    finally:
        if _alive(child):
            os.kill(child, 9)


_ORPHAN = """
import os, subprocess, sys, time
# The middle process: starts a "worker" that guards itself against this process's death
# with the parent-pid watchdog only (as on macOS, where PR_SET_PDEATHSIG is missing: the
# worker reads `sys.platform` when it arms its guard), then dies.
code = '''
import os, sys, time
from fastapi_offload.lanes.process import worker as _process
_process.PARENT_POLL = 0.05
sys.platform = "darwin"
_process.noop("normal", int(sys.argv[1]))
sys.platform = "linux"
print(os.getpid(), flush=True)
time.sleep(60)
'''
child = subprocess.Popen(
    [sys.executable, "-c", code, str(os.getpid())], stdout=subprocess.PIPE, text=True
)
print(child.stdout.readline().strip(), flush=True)
os._exit(0)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_parent_watchdog_ends_an_orphaned_worker(tmp_path: Path) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(textwrap.dedent(_ORPHAN))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    worker = int(done.stdout.strip())
    deadline = time.monotonic() + 5
    while _alive(worker):
        if time.monotonic() > deadline:
            os.kill(worker, 9)
            raise AssertionError("the worker outlived its parent")
        time.sleep(0.05)


async def _large_async() -> list[list[int]]:
    return [[1] * 1000] * 100_000  # ~200 MB of JSON


@pytest.mark.anyio
async def test_a_large_loop_result_is_refused_off_the_loop() -> None:
    # Was: a loop task's result was encoded whole on the loop (7.3 s for this one).
    import anyio

    from fastapi_offload import Offload

    offload = Offload(keep_result=True, result_max_bytes=1_000_000, loop_block_threshold=0)
    worst = 0.0
    async with offload.lifespan(None):
        done = anyio.Event()

        async def tick() -> None:
            nonlocal worst
            while not done.is_set():
                start = time.perf_counter()
                await anyio.sleep(0.01)
                worst = max(worst, time.perf_counter() - start)

        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            await anyio.sleep(0.05)  # the ticker is measuring
            handle = await offload.submit(_large_async)
            await offload.join()
            done.set()
        info = await offload.status(handle.id)
    assert info is not None and "too large" in str(info.error)
    assert worst < 1.0, worst  # now ~16 ms
