"""docs_src/dependencies_app.py under uvicorn, with the /health route the fixture polls."""

from __future__ import annotations

from docs_src.dependencies_app import app

__all__ = ["app"]


@app.get("/health")
def health() -> dict[str, bool]:
    return {"ok": True}
