from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from fastapi_offload import OffloadTasks

app = FastAPI()


def download(source: str, path: str) -> None:
    Path(path).write_text(f"contents of {source}")  # stands in for an HTTP download


def index(path: str) -> None:
    Path(path + ".idx").write_text(str(len(Path(path).read_text().split())))


@app.post("/mirror", status_code=202)
async def mirror(source: str, path: str, tasks: OffloadTasks) -> dict[str, str]:
    # Was: tasks.add_task(download, ...); tasks.add_task(index, ...), which relied on
    # BackgroundTasks running them one after the other. OffloadTasks runs them together
    # unless told: `index` starts once `download` succeeded (and is cancelled, saying
    # why, if it failed).
    downloaded = tasks.add_task(download, source, path)
    indexed = tasks.options(after=downloaded).add_task(index, path)
    return {"download": downloaded.id, "index": indexed.id}
