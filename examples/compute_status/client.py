"""Start a count, poll its task until it has finished, then fetch the result.

python -m examples.compute_status.client 1000000 [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio
import httpx

FINISHED = {"succeeded", "failed", "cancelled"}


async def count_primes(
    client: httpx.AsyncClient, below: int, *, interval: float = 0.5
) -> dict[str, Any]:
    """Start the count, poll its status every `interval` seconds, return the result."""
    while True:
        response = await client.post("/primes", params={"below": below})
        if response.status_code != 503:
            break
        # A full lane answers 503 with Retry-After: nothing was accepted, try again.
        await anyio.sleep(float(response.headers.get("Retry-After", "1")))
    response.raise_for_status()
    accepted = response.json()
    while True:
        status = await client.get(accepted["status_url"])
        if status.status_code == 404:  # statuses live in the server's memory
            raise RuntimeError(f"the server does not know task {accepted['task_id']}")
        if status.json()["state"] in FINISHED:
            break
        await anyio.sleep(interval)
    if status.json()["state"] != "succeeded":
        raise RuntimeError(f"task {accepted['task_id']} did not succeed: {status.json()}")
    result = await client.get(accepted["result_url"])
    result.raise_for_status()
    body: dict[str, Any] = result.json()
    return body


async def main(below: int, url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        with anyio.fail_after(600):  # give up after 10 minutes
            print(await count_primes(client, below))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("below", type=int, help="count the primes below this number")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the app's address")
    args = parser.parse_args()
    anyio.run(main, args.below, args.url)
