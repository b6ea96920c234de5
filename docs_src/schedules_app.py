from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from fastapi_offload import Offload

# A store every worker process shares: one of them runs each tick. With the memory store
# each process would run every tick (and says so at start-up under --workers N).
offload = Offload(store="sqlite:///./offload.db")
app = FastAPI(lifespan=offload.lifespan)  # periodic tasks run while the lifespan runs


@offload.every(seconds=300, timeout=60, retries=2)  # any @task setting: lane, timeout...
def prune_sessions() -> None:
    # delete expired sessions
    ...


@offload.cron("0 3 * * *", catch_up=True)  # 03:00 UTC; pip install "fastapi-offload[cron]"
async def nightly_report() -> None:
    # missed while every process was down? it runs once at the next start-up
    ...


@app.get("/schedules")
async def schedules() -> list[dict[str, Any]]:
    return [info.to_dict() for info in await offload.schedules()]
