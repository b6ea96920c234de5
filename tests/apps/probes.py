"""The routes every app of the real-server tests has: `/health` (is it up) and `/pid`
(which worker process answered)."""

from __future__ import annotations

import os

from fastapi import APIRouter

probes = APIRouter()


@probes.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@probes.get("/pid")
async def pid() -> int:
    return os.getpid()
