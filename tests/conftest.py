from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from _pytest.nodeid import NodeId

ROOT = Path(__file__).resolve().parent.parent
_RUNNING_ON = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# `scripts/test` runs the suite on several processes (pytest-xdist, `--dist loadgroup`).
# Tests of the shared Redis (fixed database numbers, flushed by session fixtures) and
# RabbitMQ (shared queues, purged on start) run in one group, on one worker: a
# flush or purge from another worker would drop their tasks. Tests of the built docs
# site share it in a group, so that it is built once.
_SERVICES = frozenset({"redis_base_url", "amqp_url"})


def _uses_services(item: pytest.Item, fixturenames: Iterable[str]) -> bool:
    return item.get_closest_marker("redis") is not None or not _SERVICES.isdisjoint(fixturenames)


def pytest_itemcollected(item: pytest.Item) -> None:
    if not any(line.startswith("xdist_group:") for line in item.config.getini("markers")):
        return  # pytest-xdist is not installed
    names = getattr(item, "fixturenames", ())
    if _uses_services(item, names):
        item.add_marker(pytest.mark.xdist_group("services"))
    elif "site" in names:
        item.add_marker(pytest.mark.xdist_group("docs-site"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `--dist loadgroup` sends together the tests whose ids end in `@group`. pytest-xdist
    # 3.8 adds that suffix to `item._nodeid`, which pytest 9.2 no longer reads (the id is
    # `item._id`): without this the groups would be silently spread over the workers.
    # `_services_are_declared` fails every grouped test if the suffix goes missing.
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        groups = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
        suffix = f"@{'_'.join(groups)}"
        if groups and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)


@pytest.fixture(autouse=True)
def _services_are_declared(request: pytest.FixtureRequest) -> Iterator[None]:
    grouped = _uses_services(request.node, ())
    on_a_worker = "PYTEST_XDIST_WORKER" in os.environ
    if grouped and on_a_worker and not request.node.nodeid.endswith("@services"):
        pytest.fail("--dist loadgroup did not group this test (see tests/conftest.py)")
    yield
    # A test that reaches Redis through `request.getfixturevalue` is not seen at
    # collection: it must carry the `redis` mark, or it would run beside the others.
    if not grouped and not _SERVICES.isdisjoint(request.fixturenames):
        pytest.fail(
            f"{request.node.nodeid} uses Redis or RabbitMQ through getfixturevalue: mark it "
            "`@pytest.mark.redis` (tests/conftest.py runs those tests on one xdist worker)"
        )


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
