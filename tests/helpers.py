from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
from fastapi import FastAPI

from fastapi_offload import Offload, TaskInfo, TaskState


@asynccontextmanager
async def serve(app: FastAPI, offload: Offload | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """Run `offload`'s lifespan for `app` and give an in-process client to it."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        if offload is None:
            yield client
        else:
            async with offload.lifespan(app):
                yield client


def lines(path: object) -> list[str]:
    from pathlib import Path

    file = Path(str(path))
    return file.read_text().splitlines() if file.exists() else []


async def until_state(
    offload: Offload, task_id: str, states: set[TaskState], limit: float = 20.0
) -> TaskInfo:
    """The task's status once it is in one of `states` (polled); fails after `limit` s."""
    deadline = time.monotonic() + limit
    info = await offload.status(task_id)
    while info.state not in states:
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {states} within {limit} s: {info}")
        await anyio.sleep(0.02)
        info = await offload.status(task_id)
    return info
