"""Servers in subprocesses, the probe process, and the load trial the demo and the suite share.

An app measured by this harness answers three routes:

- `GET /health`: the cheap endpoint whose latency is the measure of the event loop;
- `POST /batch` (optional): forget earlier jobs, start counting a new batch;
- `POST /jobs?count=N&...`: accepts N jobs (the query's other parameters are the app's);
- `GET /done`: `{"done": int, "failed": int, "wall": float | null}`: jobs finished so far,
  and, once known, the seconds from the first accepted job to the last finished one as
  the server measured them (`null` lets the client's own clock stand in).
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from ._servers import ROOT, Server, client, log_dir, tail
from ._servers import server as server
from ._stats import Latency, summarize
from ._stats import fmt_ms as fmt_ms
from ._stats import table as table


class Probe:
    """The probe process (`benchmarks._probe`) measuring `paths` until `stop()`."""

    def __init__(
        self,
        url: str,
        paths: Sequence[str] = ("/health",),
        *,
        interval: float = 0.005,
        duration: float | None = None,
        max_seconds: float = 300.0,
    ) -> None:
        argv = [sys.executable, "-m", "benchmarks._probe", url, *paths]
        argv += ["--interval", str(interval), "--max-seconds", str(max_seconds)]
        if duration is not None:
            argv += ["--duration", str(duration)]
        self._stderr_path = log_dir() / f"probe-{time.monotonic_ns()}.log"
        self._stderr = self._stderr_path.open("wb")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        try:
            self._expect_ready(timeout=30.0)
        except BaseException:
            self.kill()
            raise

    def _expect_ready(self, timeout: float) -> None:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if line.strip() != "ready":
            raise RuntimeError(f"probe did not start: {line!r}\n{tail(self._stderr_path)}")

    def kill(self) -> None:
        self.process.kill()
        with contextlib.suppress(subprocess.SubprocessError, OSError, ValueError):
            self.process.communicate(timeout=10)  # reaps it and closes the pipes
        self._stderr.close()

    def stop(self, timeout: float = 90.0, *, since: float = 0.0) -> dict[str, Latency]:
        """End the window (at once, or when `duration` is over) and summarize each path,
        keeping the probes answered at or after `since` (a `time.monotonic()` value).

        Answered, not sent: a request stuck behind background work absorbs the whole
        wait in one sample, and that sample must count even if it was sent earlier."""
        try:
            out, _ = self.process.communicate("stop\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._stderr.close()
        if self.process.returncode != 0:
            raise RuntimeError(f"probe failed:\n{tail(self._stderr_path)}")
        raw: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return {
            path: summarize(
                [
                    ms
                    for ms, sent in zip(v["latencies_ms"], v["sent_at"], strict=True)
                    if sent + ms / 1000.0 >= since
                ],
                v["errors"],
            )
            for path, v in raw.items()
        }


def probe_idle(url: str, paths: Sequence[str], seconds: float) -> dict[str, Latency]:
    return Probe(url, paths, duration=seconds).stop()


def generate_load(
    url: str,
    path: str,
    *,
    connections: int,
    warmup: float,
    duration: float,
    pid: int | None = None,
) -> dict[str, float]:
    """Run the load generator (`benchmarks._load`) against `path`; its JSON summary (with
    `cpu_us`, the CPU time of process `pid` per request, when `pid` is given)."""
    argv = [sys.executable, "-m", "benchmarks._load", url, path]
    argv += ["--connections", str(connections), "--warmup", str(warmup)]
    argv += ["--duration", str(duration)]
    if pid is not None:
        argv += ["--pid", str(pid)]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=warmup + duration + 90.0
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- load trial ---------------------------------------------------------------------------


def post_jobs(
    url: str, requests: int, params: Mapping[str, str | int | float], *, connections: int = 32
) -> None:
    """POST /jobs `requests` times at once, over up to `connections` connections."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    with client(url, 120.0, limits=limits) as http:

        def one(_: int) -> None:
            http.post("/jobs", params=dict(params)).raise_for_status()

        with ThreadPoolExecutor(max_workers=min(requests, connections)) as pool:
            list(pool.map(one, range(requests)))


def new_batch(url: str) -> None:
    with client(url, 30.0) as http:
        http.post("/batch").raise_for_status()


def queued(url: str) -> int:
    """`GET /queued`: tasks still in the broker, for the apps whose workers read one."""
    with client(url, 30.0) as http:
        return int(http.get("/queued").raise_for_status().json()["queued"])


def wait_done(url: str, expected: int, *, timeout: float, poll: float = 0.02) -> dict[str, Any]:
    """Poll `GET /done` until `expected` jobs have finished; the last answer."""
    deadline = time.monotonic() + timeout
    with client(url, timeout) as http:
        while True:
            state: dict[str, Any] = http.get("/done").raise_for_status().json()
            if state["done"] + state["failed"] >= expected:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{state['done']} of {expected} jobs done after {timeout} s")
            time.sleep(poll)


@dataclass(frozen=True)
class LoadResult:
    idle: dict[str, Latency]
    loaded: dict[str, Latency]
    wall: float
    failed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "idle": {p: s.as_dict() for p, s in self.idle.items()},
            "loaded": {p: s.as_dict() for p, s in self.loaded.items()},
            "wall": self.wall,
            "failed": self.failed,
        }


def load_trial(
    srv: Server,
    submit: Callable[[], None],
    expected: int,
    *,
    paths: Sequence[str] = ("/health",),
    idle_seconds: float = 1.0,
    timeout: float = 120.0,
    batches: bool = True,
    count_submission: bool = True,
    on_step: Callable[[str], None] = lambda _: None,
) -> LoadResult:
    """Probe `paths` idle, then again while `submit()`'s jobs run, until all are done.

    `batches`: the app has `POST /batch`, called first so that earlier jobs (a warm-up)
    do not count. `count_submission=False` keeps only the probes answered once
    `submit()` returned: with many requests, their own handling would otherwise be
    measured as the cost of the background work.
    """
    on_step(f"idle probe {idle_seconds:.1f} s")
    idle = probe_idle(srv.url, paths, idle_seconds)
    if batches:
        new_batch(srv.url)
    probe = Probe(srv.url, paths, max_seconds=timeout + 30)
    since = 0.0
    try:
        on_step(f"submitting, probing every 5 ms until {expected} jobs are done")
        started = time.perf_counter()
        submit()
        if not count_submission:
            since = time.monotonic()
        state = wait_done(srv.url, expected, timeout=timeout)
        client_wall = time.perf_counter() - started
    except BaseException:
        probe.kill()
        raise
    loaded = probe.stop(since=since)
    srv.check_alive()
    wall = state.get("wall")
    return LoadResult(
        idle=idle,
        loaded=loaded,
        wall=float(wall) if wall is not None else client_wall,
        failed=int(state["failed"]),
    )
