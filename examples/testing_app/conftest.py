from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from fastapi_offload import Offload

from .app import create_app

# The `inline_backend` and `recording_backend` fixtures. In your project, this line
# goes in the top-level conftest.py.
pytest_plugins = ["fastapi_offload.testing"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the tasks write: a fresh directory per test (process workers inherit it)."""
    monkeypatch.setenv("SIGNUP_DATA_DIR", str(tmp_path))
    return tmp_path


@asynccontextmanager
async def running(offload: Offload) -> AsyncIterator[httpx.AsyncClient]:
    """The app with `offload` started, and a client that calls it in-process."""
    app = create_app(offload)
    async with offload.lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
