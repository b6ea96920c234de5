"""What `POST /jobs` asks for (`kind` and its parameter), as a callable and its arguments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException

from . import _jobs

KINDS = ("cpu", "sleep", "noop", "bytes")


def job_call(
    kind: str, iterations: int, seconds: float, size: int, *, on_loop: bool = False
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """The job for `kind`; `on_loop` picks its `async def` twin (for the loop lane)."""
    if kind == "cpu":
        return (_jobs.crunch_on_loop if on_loop else _jobs.crunch), (iterations,)
    if kind == "sleep":
        return _jobs.block, (seconds,)
    if kind == "noop":
        return (_jobs.noop_on_loop if on_loop else _jobs.noop), ()
    if kind == "bytes":
        return _jobs.measure, (b"x" * size,)
    raise HTTPException(422, f"kind must be one of {', '.join(KINDS)}")


def add_probe_routes(app: FastAPI) -> None:
    """`/health` (async, answers on the loop) and `/sync` (def, answers from the thread pool)."""

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/sync")
    def sync() -> dict[str, bool]:
        # A sync endpoint runs on anyio's default thread limiter: it shows whether
        # background work has taken the threads that requests need.
        return {"ok": True}
