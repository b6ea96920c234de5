"""An app for the log tests under uvicorn. `APP_LOGGING` says how it configures logging:
unset, not at all (uvicorn's default config alone); `import`, `logging.basicConfig` before
its `Offload` is created; `lifespan`, `dictConfig` with a root handler in its own lifespan,
after its `Offload` was created (at import)."""

from __future__ import annotations

import logging.config
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastapi_offload import Offload

HOW = os.environ.get("APP_LOGGING", "")
FORMAT = "APP %(levelname)s %(name)s: %(message)s"

if HOW == "import":
    logging.basicConfig(level=logging.INFO, format=FORMAT)

offload = Offload()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if HOW == "lifespan":
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"app": {"format": FORMAT}},
                "handlers": {"app": {"class": "logging.StreamHandler", "formatter": "app"}},
                "root": {"handlers": ["app"], "level": os.environ.get("APP_LEVEL", "INFO")},
            }
        )
    async with offload.lifespan(app):
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}
