from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks


class Database:  # stands in for your connection pool
    def __init__(self) -> None:
        self.connected = False
        self.visits: list[str] = []

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    def insert_visit(self, path: str) -> None:
        if not self.connected:
            raise RuntimeError("the database is closed")
        self.visits.append(path)


db = Database()
offload = Offload()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await db.connect()  # your start-up
    async with offload.lifespan(app):
        yield
    await db.close()  # your shutdown: runs after the drain, so tasks still had the db


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def home(tasks: OffloadTasks) -> dict[str, str]:
    tasks.add_task(db.insert_visit, "/")
    return {"hello": "world"}
