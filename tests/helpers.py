from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from fastapi_offload import Offload


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
