"""docs_src/progress_app.py under a real uvicorn: the docs app, plus the `/health` route
the test server fixture waits for."""

from __future__ import annotations

from docs_src.progress_app import app


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}
