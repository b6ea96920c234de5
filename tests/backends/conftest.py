"""Real services for the remote backend tests: a Redis server and Celery / RQ workers.

Redis is found at `OFFLOAD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). When
none answers, a `redis-server` from `PATH` is started on a free port; without one the
tests that need Redis are skipped, or fail when `OFFLOAD_REQUIRE_SERVICES=1` (CI).
Celery uses database 13 and RQ database 14; both are flushed before and after the
session (15 is for a worker told the wrong database). RabbitMQ, for Celery's AMQP
broker, is found at `OFFLOAD_TEST_AMQP_URL` (default amqp://guest:guest@127.0.0.1:5672//),
or its tests are skipped the same way. Workers are started once per session, as
subprocesses in their own process groups, with their output in files whose paths appear
in every failure message.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery import Celery

from fastapi_offload.backends.base import Backend
from fastapi_offload.backends.celery import CeleryBackend
from fastapi_offload.backends.rq import RQBackend

# The documented way to get the test doubles' fixtures is
# `pytest_plugins = ["fastapi_offload.testing"]` in a top-level conftest; pytest allows
# that only at the top level, so this directory imports the fixtures instead.
from fastapi_offload.testing import inline_backend as inline_backend
from fastapi_offload.testing import recording_backend as recording_backend

ROOT = Path(__file__).resolve().parents[2]
CELERY_DB = 13
RQ_DB = 14
OTHER_DB = 15
TEST_QUEUE = "offload-tests"


def backend_of(kind: str, url: str) -> Backend:
    """An unstarted backend of `kind` (`celery` or `rq`) sending to the tests' queue."""
    if kind == "celery":
        return CeleryBackend(broker_url=url, result_backend=url, queue=TEST_QUEUE)
    return RQBackend(redis_url=url, queue=TEST_QUEUE)


EXAMPLE_QUEUE = "offload-example"
AMQP_QUEUE = "offload-amqp-tests"
NO_URL_QUEUE = "offload-no-url"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("OFFLOAD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (OFFLOAD_REQUIRE_SERVICES=1 turns this skip into a failure)")
    pytest.skip(reason)


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    # Each service runs in its own process group (start_new_session): a group kill
    # also reaches Celery's pool children and RQ's work horses, and nothing else.
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`redis://host:port` of a Redis that answers (found, started, or skip)."""
    raw = os.environ.get("OFFLOAD_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    parts = urlsplit(raw)
    base = urlunsplit(parts._replace(path="", query="", fragment=""))
    if _answers(base):
        yield base
        return
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable(f"no Redis answers at {raw} and no redis-server is on PATH")
    port = _free_port()
    log = tmp_path_factory.mktemp("redis") / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"redis://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while not _answers(base):
            if process.poll() is not None or time.monotonic() > deadline:
                _unavailable(f"redis-server did not start on port {port}: {log.read_text()}")
            time.sleep(0.05)
        yield base
    finally:
        _stop(process)


def _flushed(url: str) -> Iterator[str]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def celery_url(redis_base_url: str) -> Iterator[str]:
    """Celery's broker and result store for the session (flushed before and after)."""
    yield from _flushed(f"{redis_base_url}/{CELERY_DB}")


@pytest.fixture(scope="session")
def rq_url(redis_base_url: str) -> Iterator[str]:
    """RQ's Redis for the session (flushed before and after)."""
    yield from _flushed(f"{redis_base_url}/{RQ_DB}")


@pytest.fixture(scope="session")
def other_url(redis_base_url: str) -> Iterator[str]:
    """A Redis database that no web process of the tests uses (flushed before and after)."""
    yield from _flushed(f"{redis_base_url}/{OTHER_DB}")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The URL of a RabbitMQ that answers (or skip)."""
    url = os.environ.get("OFFLOAD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    probe = Celery("probe", broker=url, set_as_current=False)
    probe.conf.update(task_default_queue=AMQP_QUEUE, broker_connection_timeout=1)
    try:
        with probe.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=1)
        # Messages a crashed earlier run left in the queue would run first.
        probe.control.purge()
    except Exception as exc:
        _unavailable(f"no RabbitMQ answers at {url} ({exc})")
    finally:
        probe.close()
    return url


@dataclass
class WorkerProcess:
    """A worker started by a fixture, and where its output goes."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the worker log {self.log_path}:\n{self.log()}")


# What `rq worker` reads when given no --url; kept from the workers the tests start, so
# that only what a test gives them counts.
_RQ_VARIABLES = ("RQ_REDIS_URL", "RQ_CONFIG", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB")


def _start_worker(
    command: list[str], env: dict[str, str], log_path: Path, ready: str
) -> Generator[WorkerProcess]:
    inherited = {k: v for k, v in os.environ.items() if k not in _RQ_VARIABLES}
    full_env = {**inherited, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env}
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(process, log_path)
    try:
        worker.wait_for_log(ready, timeout=30)
        yield worker
    finally:
        _stop(process)


def _celery_command(module: str, node: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        module,
        "worker",
        "--pool=prefork",
        "--concurrency=1",
        "--loglevel=INFO",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "-n",
        f"{node}@%h",
    ]


def _rq_command(url: str | None, worker_class: str, *queues: str) -> list[str]:
    given = ["--url", url] if url is not None else []
    return [
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        "--with-scheduler",
        *given,
        "--worker-class",
        worker_class,
        *queues,
    ]


def _celery_env(url: str, queue: str) -> dict[str, str]:
    return {
        "OFFLOAD_CELERY_BROKER_URL": url,
        "OFFLOAD_CELERY_RESULT_BACKEND": url,
        "OFFLOAD_CELERY_QUEUE": queue,
    }


@pytest.fixture(scope="session")
def celery_worker(
    celery_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """`celery -A tests.backends.celery_worker worker`, one prefork child."""
    log = tmp_path_factory.mktemp("celery") / "celery-tests.log"
    yield from _start_worker(
        _celery_command("tests.backends.celery_worker", "tests"),
        _celery_env(celery_url, TEST_QUEUE),
        log,
        "ready.",
    )


@pytest.fixture(scope="session")
def rq_worker(rq_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """`rq worker --worker-class tests.backends.rq_worker.Worker`, with the scheduler."""
    log = tmp_path_factory.mktemp("rq") / "rq-tests.log"
    yield from _start_worker(
        _rq_command(rq_url, "tests.backends.rq_worker.Worker", TEST_QUEUE),
        {"OFFLOAD_REDIS_URL": rq_url},
        log,
        "Listening on",
    )


@pytest.fixture(scope="session")
def celery_amqp_worker(
    amqp_url: str, celery_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """The tests' Celery worker with RabbitMQ as its broker and Redis as its result store."""
    log = tmp_path_factory.mktemp("celery") / "celery-amqp.log"
    yield from _start_worker(
        _celery_command("tests.backends.celery_worker", "amqp"),
        {**_celery_env(celery_url, AMQP_QUEUE), "OFFLOAD_CELERY_BROKER_URL": amqp_url},
        log,
        "ready.",
    )


@pytest.fixture(scope="session")
def rq_no_url_worker(
    rq_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """`rq worker --worker-class ...` given neither `--url` nor a queue: only the
    `OFFLOAD_*` variables say where to listen (a non-zero db, and its own queue)."""
    log = tmp_path_factory.mktemp("rq") / "rq-no-url.log"
    yield from _start_worker(
        _rq_command(None, "tests.backends.rq_worker.Worker"),
        {"OFFLOAD_REDIS_URL": rq_url, "OFFLOAD_RQ_QUEUE": NO_URL_QUEUE},
        log,
        "Listening on",
    )


@pytest.fixture(scope="session")
def celery_example_worker(
    celery_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """The example's own worker command, on its own queue."""
    log = tmp_path_factory.mktemp("celery") / "celery-example.log"
    yield from _start_worker(
        _celery_command("examples.remote.celery_worker", "example"),
        _celery_env(celery_url, EXAMPLE_QUEUE),
        log,
        "ready.",
    )


@pytest.fixture(scope="session")
def rq_example_worker(
    rq_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """The example's own worker command, on its own queue."""
    log = tmp_path_factory.mktemp("rq") / "rq-example.log"
    yield from _start_worker(
        _rq_command(rq_url, "examples.remote.rq_worker.Worker", EXAMPLE_QUEUE),
        {"OFFLOAD_REDIS_URL": rq_url},
        log,
        "Listening on",
    )


@pytest.fixture
async def celery_backend(celery_url: str) -> AsyncIterator[CeleryBackend]:
    """A started `CeleryBackend` sending to the tests' queue."""
    backend = CeleryBackend(
        broker_url=celery_url, result_backend=celery_url, queue=TEST_QUEUE, broker_timeout=2
    )
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


@pytest.fixture
async def rq_backend(rq_url: str) -> AsyncIterator[RQBackend]:
    """A started `RQBackend` sending to the tests' queue."""
    backend = RQBackend(redis_url=rq_url, queue=TEST_QUEUE, broker_timeout=2)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


@dataclass
class Remote:
    """A started backend and the worker that runs its tasks."""

    backend: Backend
    worker: WorkerProcess

    @property
    def log(self) -> Callable[[], str]:
        return self.worker.log


@pytest.fixture(params=["celery", "rq"])
def remote(request: pytest.FixtureRequest) -> Remote:
    """Each test using it runs once with Celery and once with RQ, against real workers."""
    worker: WorkerProcess = request.getfixturevalue(f"{request.param}_worker")
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    return Remote(backend, worker)


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (connections are refused at once)."""
    return _free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts connections and never answers (a hung broker)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            readable, _, _ = select.select([server], [], [], 0.1)
            if readable:
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()
