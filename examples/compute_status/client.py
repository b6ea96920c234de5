"""Start a count, poll its task until it has finished, showing its progress, then print
the result that the task kept.

python -m examples.compute_status.client 1000000 [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import anyio
import httpx

FINISHED = {"succeeded", "failed", "cancelled", "interrupted"}

Status = dict[str, Any]


async def count_primes(
    client: httpx.AsyncClient,
    below: int,
    *,
    interval: float = 0.5,
    on_status: Callable[[Status], object] = lambda status: None,
) -> dict[str, Any]:
    """Start the count, poll its status every `interval` seconds (each one goes to
    `on_status`), return its result. Raises `RuntimeError` if it does not succeed."""
    while True:
        response = await client.post("/primes", params={"below": below})
        if response.status_code != 503:
            break
        # A full lane answers 503 with Retry-After: nothing was accepted, try again.
        await anyio.sleep(float(response.headers.get("Retry-After", "1")))
    response.raise_for_status()
    accepted = response.json()
    while True:
        reply = await client.get(accepted["status_url"])
        if reply.status_code == 404:  # statuses live in the server's memory
            raise RuntimeError(f"the server does not know task {accepted['task_id']}")
        status: Status = reply.json()
        on_status(status)
        if status["state"] in FINISHED:
            break
        await anyio.sleep(interval)
    if status["state"] != "succeeded":
        raise RuntimeError(f"task {accepted['task_id']} did not succeed: {status}")
    result: dict[str, Any] = status["result"]  # kept by the task (keep_result=True)
    return result


def progress_line(status: Status, width: int = 30) -> str:
    """`[#########---------------------]  30% 299,998 of 999,998 numbers checked`"""
    fraction = status["progress"] or 0.0
    filled = round(fraction * width)
    message = status["progress_message"] or status["state"]
    return f"[{'#' * filled}{'-' * (width - filled)}] {fraction:4.0%} {message}"


async def main(below: int, url: str) -> None:
    shown = ""

    def show(status: Status) -> None:
        nonlocal shown
        line = progress_line(status)
        # One line, redrawn in place; the padding wipes what a longer line left behind.
        # On stderr, so that stdout holds only the result.
        print(f"\r{line:<{len(shown)}}", end="", file=sys.stderr, flush=True)
        shown = line

    async with httpx.AsyncClient(base_url=url) as client:
        with anyio.fail_after(600):  # give up after 10 minutes
            try:
                result = await count_primes(client, below, on_status=show)
            finally:
                print(file=sys.stderr)  # end the progress line
    print(result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("below", type=int, help="count the primes below this number")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the app's address")
    args = parser.parse_args()
    anyio.run(main, args.below, args.url)
