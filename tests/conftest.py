from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
_RUNNING_ON = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Server:
    """A real uvicorn server running one of the test apps in a subprocess."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the server log within {timeout} s:\n{self.log()}")

    def wait_for_state(
        self, task_id: str, states: set[str], timeout: float = 20.0
    ) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        body: dict[str, object] = {}
        with self.client() as client:
            while time.monotonic() < deadline:
                body = client.get(f"/tasks/{task_id}").json()
                if body.get("state") in states:
                    return body
                time.sleep(0.05)
        raise AssertionError(f"task {task_id} not in {states} within {timeout} s: {body}")

    def kill(self) -> None:
        """SIGKILL the server process: an OOM kill, a crashed node, a deploy past its grace."""
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a process manager would; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"server did not stop within {timeout} s:\n{self.log()}") from None


StartServer = Callable[..., Server]


@contextmanager
def run_server(
    app: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    loop: str = "asyncio",
    args: tuple[str, ...] = (),
) -> Iterator[Server]:
    # Port 0: the kernel picks a free port and uvicorn logs it (no free-port race). Not
    # `--fd`: uvicorn takes an inherited socket for a Unix socket and leaves Nagle's
    # algorithm on, which adds ~40 ms to every response.
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0"]
    command += ["--loop", loop, "--log-level", "info", "--timeout-graceful-shutdown", "5"]
    command += args
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # Its own process group: the clean-up below also reaches `--workers` children.
            start_new_session=True,
        )
    server = Server("", process, log_path)
    try:
        deadline = time.monotonic() + 30
        while not (found := _RUNNING_ON.search(server.log())):
            if process.poll() is not None:
                raise AssertionError(f"server exited early:\n{server.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready within 30 s:\n{server.log()}")
            time.sleep(0.05)
        server.url = found.group(1)
        # With `--workers N` the parent listens before its workers have started.
        while True:
            try:
                assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(f"server not serving in time:\n{server.log()}") from None
                time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # workers of `--workers N`, if any
        except ProcessLookupError:
            pass


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start test apps under uvicorn: `start_server("tests.apps.server_app:app", env={...})`."""
    with ExitStack() as stack:
        counter = iter(range(100))

        def start(
            app: str,
            env: dict[str, str] | None = None,
            loop: str = "asyncio",
            args: tuple[str, ...] = (),
        ) -> Server:
            log_path = tmp_path / f"server-{next(counter)}.log"
            return stack.enter_context(run_server(app, log_path, env, loop, args))

        yield start
