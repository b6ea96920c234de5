"""A durable store that cannot answer is a 503, never `unknown`: a real uvicorn on a real
Redis that this test kills (SIGKILL) or freezes (SIGSTOP), and on a real SQLite file.

Each Redis here is this test's own, on a free port: the shared one is never frozen."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import Server, StartServer

pytestmark = [pytest.mark.server]

APP = "tests.apps.outage_app:app"


@dataclass
class OwnRedis:
    """A redis-server of this test's own, which it may kill or freeze by pid."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "no redis-server on PATH: the store outage tests start their own"
        if os.environ.get("OFFLOAD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (OFFLOAD_REQUIRE_SERVICES=1 turns this skip into a failure)")
        pytest.skip(reason)
    port = _free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    log = tmp_path / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = OwnRedis(process, port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(server.url, socket_timeout=0.5) as client:
                    client.ping()
                break
            except (redis.RedisError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # a frozen process does not die of SIGTERM
            process.kill()
            process.wait()


def post_nap(server: Server, seconds: float) -> str:
    with server.client() as client:
        response = client.post("/nap", params={"seconds": seconds})
        assert response.status_code == 202, response.text
        return str(response.json())


@dataclass
class Stream:
    """An SSE stream read in a thread: what arrived so far is `text`."""

    text: str = ""
    done: bool = False


def follow(url: str, seconds: float) -> Stream:
    """Read `url` as an event stream for `seconds` (or until it ends), in a thread."""
    stream = Stream()

    def read() -> None:
        deadline = time.monotonic() + seconds
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(seconds)) as client,
                client.stream("GET", url) as response,
            ):
                for chunk in response.iter_text():
                    stream.text += chunk
                    if time.monotonic() > deadline:
                        break
        except httpx.HTTPError:
            pass
        finally:
            stream.done = True

    threading.Thread(target=read, daemon=True).start()
    return stream


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


def assert_store_unavailable(response: httpx.Response, *, secrets: tuple[str, ...]) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["retry-after"] == "1"
    detail = response.json()["detail"]
    assert detail.startswith("the task store is unavailable"), detail
    for secret in secrets:
        assert secret not in response.text  # neither the host nor the file


@pytest.mark.redis
def test_a_killed_redis_is_a_503_and_a_stream_keeps_following(
    own_redis: OwnRedis, start_server: StartServer
) -> None:
    env = {"OFFLOAD_STORE": own_redis.url}
    runner, reader = start_server(APP, env=env), start_server(APP, env=env)
    finished = post_nap(runner, 0)
    reader.wait_for_state(finished, {"succeeded"})
    running = post_nap(runner, 60)
    reader.wait_for_state(running, {"running"})
    # The task runs in the other process: this stream polls the store.
    stream = follow(f"{reader.url}/tasks/{running}/events", seconds=6)
    wait_until(lambda: "event: status" in stream.text, 10, "the stream's first status")

    own_redis.kill()
    # Opened during the outage: a stream too (a 503 would make EventSource give up).
    late = follow(f"{reader.url}/tasks/{running}/events", seconds=2)
    with reader.client() as client:
        # Old: 404 `unknown` for a task that succeeded.
        assert_store_unavailable(
            client.get(f"/tasks/{finished}"), secrets=(str(own_redis.port), "127.0.0.1")
        )
        started = time.monotonic()
        response = client.post("/nap", params={"seconds": 0})
        assert_store_unavailable(response, secrets=(str(own_redis.port),))
        assert time.monotonic() - started < 5  # about the store timeout (1 s), or less
        snapshot = client.get("/offload/snapshot").json()
    assert snapshot["store_error"], snapshot["store_error"]
    assert "the task store is unavailable" in snapshot["store_error"]

    wait_until(lambda: stream.done, 15, "the stream closing after its 6 s")
    # Old: `end {"state":"unknown"}`, and the browser stopped following a live task.
    assert "event: end" not in stream.text and "id: end" not in stream.text, stream.text
    assert "event: store_unavailable" in stream.text, stream.text
    wait_until(lambda: late.done, 15, "the late stream closing after its 2 s")
    assert late.text.startswith("retry: 1000") and "event: end" not in late.text, late.text
    assert "event: store_unavailable" in late.text, late.text


@pytest.mark.redis
def test_a_frozen_redis_answers_60_status_reads_with_503_in_seconds_not_minutes(
    own_redis: OwnRedis, start_server: StartServer
) -> None:
    env = {"OFFLOAD_STORE": own_redis.url}
    runner, reader = start_server(APP, env=env), start_server(APP, env=env)
    finished = post_nap(runner, 0)
    reader.wait_for_state(finished, {"succeeded"})
    running = post_nap(runner, 60)
    reader.wait_for_state(running, {"running"})
    stream = follow(f"{reader.url}/tasks/{running}/events", seconds=6)
    wait_until(lambda: "event: status" in stream.text, 10, "the stream's first status")

    own_redis.freeze()
    try:
        with reader.client(timeout=120) as client:
            started = time.monotonic()
            response = client.post("/nap", params={"seconds": 0})
            posted = time.monotonic() - started
            assert_store_unavailable(response, secrets=(str(own_redis.port),))
            # Old: 11 s. Now about the store timeout (1 s), or at once once the breaker is open.
            assert posted < 5, posted

            def read(_: int) -> httpx.Response:
                return client.get(f"/tasks/{finished}")

            started = time.monotonic()
            with ThreadPoolExecutor(60) as pool:
                responses = list(pool.map(read, range(60)))
            took = time.monotonic() - started
            snapshot = client.get("/offload/snapshot").json()
        # Old: 90 s in all, and every one a 404.
        for response in responses:
            assert_store_unavailable(response, secrets=(str(own_redis.port), "127.0.0.1"))
        assert took < 15, took
        assert snapshot["store_error"], snapshot
        wait_until(lambda: stream.done, 15, "the stream closing after its 6 s")
        assert "event: end" not in stream.text, stream.text
        assert "event: store_unavailable" in stream.text, stream.text
    finally:
        own_redis.thaw()
    # Back: the breaker's probe finds it answering, and the status is read again.
    deadline = time.monotonic() + 15
    with reader.client() as client:
        while (response := client.get(f"/tasks/{finished}")).status_code == 503:
            assert time.monotonic() < deadline, "the store did not come back within 15 s"
            time.sleep(0.1)
    assert response.status_code == 200 and response.json()["state"] == "succeeded"


def test_an_unreadable_sqlite_file_is_a_503_not_a_404(
    tmp_path: Path, start_server: StartServer
) -> None:
    db = tmp_path / "data" / "offload.db"
    db.parent.mkdir()
    env = {"OFFLOAD_STORE": f"sqlite:///{db}"}
    runner, reader = start_server(APP, env=env), start_server(APP, env=env)
    finished = post_nap(runner, 0)
    reader.wait_for_state(finished, {"succeeded"})  # read from the file
    with sqlite3.connect(db) as conn:  # everything into the main file, then spoil it
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    conn.close()
    good = db.read_bytes()
    with db.open("r+b") as spoiled:  # the same file (inode), unreadable content
        spoiled.write(b"\xff" * len(good))
    try:
        with reader.client() as client:
            # Old: 404 `unknown` (the read error was logged and swallowed).
            response = client.get(f"/tasks/{finished}")
    finally:
        with db.open("r+b") as restored:
            restored.write(good)
    assert_store_unavailable(response, secrets=(str(tmp_path), "offload.db"))
    assert str(db) in reader.log()  # the log names the file
    deadline = time.monotonic() + 15
    with reader.client() as client:
        while (response := client.get(f"/tasks/{finished}")).status_code == 503:
            assert time.monotonic() < deadline, "the file did not read again within 15 s"
            time.sleep(0.1)
    assert response.status_code == 200 and response.json()["state"] == "succeeded"


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_the_sqlite_files_are_created_0600_whatever_the_umask(
    tmp_path: Path, start_server: StartServer
) -> None:
    db = tmp_path / "offload.db"
    previous = os.umask(0o022)  # the server inherits it: files would be 0644
    try:
        server = start_server(APP, env={"OFFLOAD_STORE": f"sqlite:///{db}"})
    finally:
        os.umask(previous)
    server.wait_for_state(post_nap(server, 0), {"succeeded"})
    files = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.glob("offload.db*")}
    assert files == {
        "offload.db": 0o600,
        "offload.db-wal": 0o600,
        "offload.db-shm": 0o600,
        "offload.db.key": 0o600,  # signs requeue=True calls (tests/test_saved_call.py)
    }
