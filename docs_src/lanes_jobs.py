from __future__ import annotations

import hashlib
import time

import anyio

from fastapi_offload import cpu_bound, io_bound, task


@cpu_bound  # computes: the process lane
def checksum(data: bytes, rounds: int = 10_000) -> str:
    digest = data
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@io_bound  # waits: the thread lane (and no CPU advice for it)
def send_email(address: str, subject: str) -> None:
    time.sleep(0.01)  # stands in for smtplib


@task(lane="thread", timeout=10, retries=3, retry_delay=2.0)
def call_webhook(url: str, event: str) -> None:
    time.sleep(0.01)  # stands in for an HTTP call


def export_csv(report_id: int) -> str:  # not declared: a routing rule sends it
    return "\n".join(f"{report_id},{row}" for row in range(1000))


async def notify(user_id: int) -> None:  # async def: the loop lane
    await anyio.sleep(0.01)  # stands in for an async HTTP call
