"""The latency probe: a separate process that GETs paths on a fixed period and times them.

Run as `python -m benchmarks._probe URL PATH [PATH ...]`. It prints `ready` once every
path has answered, probes until a line arrives on stdin (or stdin closes, or
`--max-seconds` passes), then prints one JSON object: per path, the latencies in
milliseconds, when each probe was sent (`time.monotonic()`) and the number of errors.
It imports only the standard library so that it starts in tens of milliseconds and
costs the machine little while it runs.

It lives in its own process because a probe inside the driver would share the driver's
GIL and scheduler hiccups; a probe inside the server would measure nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from typing import Any

# A frozen event loop can hold a request for seconds; a probe that gives up sooner would
# hide exactly the latency it exists to show.
REQUEST_TIMEOUT = 60.0


class PathProbe:
    """Probes one path over its own keep-alive connection, in its own thread."""

    def __init__(self, host: str, port: int, path: str, interval: float) -> None:
        self.host, self.port, self.path, self.interval = host, port, path, interval
        self.latencies_ms: list[float] = []
        # time.monotonic() is CLOCK_MONOTONIC, shared by every process on Linux: the
        # driver uses these to keep only the probes sent after a moment of its own.
        self.sent_at: list[float] = []
        self.errors = 0
        self._conn: http.client.HTTPConnection | None = None

    def once(self) -> float:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        started = time.perf_counter()
        self._conn.request("GET", self.path)
        response = self._conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status != 200:
            raise RuntimeError(f"GET {self.path} answered {response.status}")
        return elapsed

    def run(self, stop: threading.Event) -> None:
        next_at = time.perf_counter()
        while not stop.is_set():
            delay = next_at - time.perf_counter()
            if delay > 0 and stop.wait(delay):
                break
            # The period counts from the start of a probe; a slow answer is followed by
            # the next probe at once rather than by a burst that catches up.
            next_at = max(next_at + self.interval, time.perf_counter())
            sent_at = time.monotonic()
            try:
                self.latencies_ms.append(self.once())
                self.sent_at.append(sent_at)
            except (OSError, http.client.HTTPException, RuntimeError):
                self.errors += 1
                self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("paths", nargs="+", help="paths to probe, e.g. /health")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between probes")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="hard upper bound")
    args = parser.parse_args(argv)

    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    probes = [PathProbe(host, port, path, args.interval) for path in args.paths]
    for probe in probes:
        probe.once()  # connect and warm up before the measured window opens
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in probes]
    for thread in threads:
        thread.start()
    print("ready", flush=True)

    limit = args.max_seconds if args.duration is None else min(args.duration, args.max_seconds)
    if args.duration is None:

        def watch_stdin() -> None:
            sys.stdin.readline()  # any line, or end of file, ends the window
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait(limit)
    stop.set()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT)
    result: dict[str, Any] = {
        p.path: {"latencies_ms": p.latencies_ms, "sent_at": p.sent_at, "errors": p.errors}
        for p in probes
    }
    for probe in probes:
        probe.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
