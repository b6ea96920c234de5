"""An app written for BackgroundTasks with only the annotation changed: no Offload at all."""

from __future__ import annotations

from fastapi import FastAPI, Response

from fastapi_offload import OffloadTasks

from . import jobs

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/work")
async def work(tasks: OffloadTasks, path: str) -> dict[str, str]:
    tasks.add_task(jobs.write, path, "sync")
    tasks.add_task(jobs.fail, "this one fails")
    tasks.add_task(jobs.async_write, path, "async")
    return {"status": "accepted"}


@app.post("/custom-response")
async def custom_response(tasks: OffloadTasks, path: str) -> Response:
    tasks.add_task(jobs.write, path, "custom")
    return Response("done", media_type="text/plain")


@app.post("/burn")
async def burn(tasks: OffloadTasks, seconds: float) -> dict[str, str]:
    tasks.add_task(jobs.burn_in_process, seconds)
    return {"status": "accepted"}
