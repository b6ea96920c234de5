"""Services in subprocesses: the uvicorn server under test and the workers beside it.

Each runs in its own process group with its output captured to a file (named in every
error), and is stopped politely, then killed with whatever it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

from ._load import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def client(url: str, timeout: float, **options: Any) -> httpx.Client:
    """An HTTP client for the servers under test (plain HTTP on 127.0.0.1 only).

    `verify=False` skips loading the CA bundle, which costs ~15 ms of CPU per client:
    the driver creates clients often and shares 2 cores with what it measures.
    """
    return httpx.Client(base_url=url, timeout=timeout, verify=False, **options)


def free_port() -> int:
    """A port that was free a moment ago (the OS picks it; the server binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def log_dir() -> Path:
    """Where servers' and workers' output goes; one directory per driver process."""
    global _LOG_DIR
    if _LOG_DIR is None:
        _LOG_DIR = Path(tempfile.mkdtemp(prefix="offload-bench-"))
    return _LOG_DIR


_LOG_DIR: Path | None = None


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


# Each service in a session of its own (the default), or all in the driver's session.
# Where Linux autogroups are on (kernel.sched_autogroup_enabled=1, processes in the root
# cpu cgroup), a session is a scheduling group weighed against the others: beside other
# load, a strategy whose workers run in a service of their own (Celery, RQ) then gets
# one more group's share of the CPU than one whose workers are the server's children.
OWN_SESSIONS = True


class Service:
    """A subprocess in its own process group, its output captured to a file.

    `stop()` asks politely (SIGTERM, or SIGINT for uvicorn), then kills the whole group,
    so worker processes the service started (anyio's, Celery's) go with it.
    """

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_dir() / f"{name}-{time.monotonic_ns()}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # A group of its own either way (`stop()` kills the group); `process_group`
            # is Python 3.11+, which `--shared-session` checks.
            **({"start_new_session": True} if OWN_SESSIONS else {"process_group": 0}),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.name} exited with code {code}; its output ({self.log_path}):\n"
                + tail(self.log_path)
            )

    def stop(self, grace: float = 10.0, stop_signal: int = signal.SIGTERM) -> None:
        try:
            if self.process.poll() is None:
                self.process.send_signal(stop_signal)
                try:
                    self.process.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            # Whatever is left of the group (a stuck worker) is ours to kill.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        finally:
            self._log.close()


class Server(Service):
    """`uvicorn APP` on a free port of 127.0.0.1, ready when `GET /health` answers."""

    def __init__(
        self,
        app: str,
        env: Mapping[str, str] | None = None,
        *,
        start_timeout: float = 30.0,
        prefix: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        # `prefix`: a command that execs the rest (`benchmarks._tenants`), so the pid and
        # process group stay the server's.
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            "5",
        ]
        super().__init__("server-" + app.replace(":", "-"), argv, env)
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with client(self.url, 2.0) as http:
            while True:
                self.check_alive()
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.name} did not answer /health within {timeout:.0f} s; "
                        f"its output ({self.log_path}):\n{tail(self.log_path)}"
                    )
                time.sleep(0.05)

    def stop(self, grace: float = 10.0, stop_signal: int = signal.SIGINT) -> None:
        # SIGINT is uvicorn's graceful shutdown: the lifespan's exit runs.
        super().stop(grace, stop_signal)

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) of the server process, not its workers."""
        return cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        """Resident set size of the server process (not its workers), from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for pid {self.pid}")


@contextlib.contextmanager
def server(
    app: str, env: Mapping[str, str] | None = None, prefix: Sequence[str] = ()
) -> Iterator[Server]:
    """`Server(app, env, prefix=prefix)`, stopped on exit whatever happened."""
    srv = Server(app, env, prefix=prefix)
    try:
        yield srv
    finally:
        srv.stop()
