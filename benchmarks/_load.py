"""A keep-alive HTTP load generator: `python -m benchmarks._load URL PATH --connections N`.

Each connection sends one request, reads the whole response, and sends the next, for
`--warmup` seconds (not counted) then `--duration` seconds. Prints one JSON object:
requests, errors, seconds, requests per second and latency percentiles (ms).

With `--pid PID` (the server's), it also prints `cpu_us`: that process's CPU time (user
and system, all its threads) from the end of the warm-up to the end of the load, per
counted request. On a shared machine it is steadier than requests per second.

Hand-written HTTP/1.1 over asyncio streams (on uvloop when installed): a general-purpose
client would spend more CPU per request than the server under test, and on 2 cores the
client's CPU is taken from the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path


async def _connection(
    host: str, port: int, request: bytes, warm_until: float, stop_at: float, out: list[float]
) -> int:
    """Requests until `stop_at`; appends measured latencies; returns the error count."""
    errors = 0
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (now := time.perf_counter()) < stop_at:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 2"):
                errors += 1
            elif now >= warm_until:
                out.append((time.perf_counter() - now) * 1000.0)
    finally:
        writer.close()
    return errors


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid`, all its threads, from /proc (the
    server's, here and in `_servers.Server.cpu_seconds`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    # None where there is no /proc: the column stays empty there.
    try:
        return cpu_seconds(pid)
    except OSError:
        return None


async def _cpu_from(pid: int, at: float) -> float | None:
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    return _cpu_seconds(pid)


async def _run(args: argparse.Namespace) -> dict[str, float]:
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    request = (
        f"{args.method} {args.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    warm_until = time.perf_counter() + args.warmup
    stop_at = warm_until + args.duration
    latencies: list[float] = []
    connections = asyncio.gather(
        *(
            _connection(host, port, request, warm_until, stop_at, latencies)
            for _ in range(args.connections)
        )
    )
    # The server's CPU from the end of the warm-up (read then by a task of its own).
    cpu_start = None if args.pid is None else asyncio.ensure_future(_cpu_from(args.pid, warm_until))
    # A server that stops answering must not hang the suite.
    errors = await asyncio.wait_for(connections, args.warmup + args.duration + 60.0)
    latencies.sort()
    cpu: dict[str, float] = {}
    if cpu_start is not None and latencies:
        start, end = await cpu_start, _cpu_seconds(args.pid)
        if start is not None and end is not None:
            cpu["cpu_us"] = (end - start) / len(latencies) * 1e6

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))] if latencies else 0.0

    return {
        "requests": len(latencies),
        "errors": sum(errors),
        "seconds": args.duration,
        "rps": len(latencies) / args.duration,
        "p50": pct(0.50),
        "p99": pct(0.99),
        **cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("path")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--pid", type=int, help="the server's process id: report its CPU time")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # the client works without it, a little slower
        result = asyncio.run(_run(args))
    else:
        result = uvloop.run(_run(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
