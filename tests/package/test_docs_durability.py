"""docs/durability.md: its example app keeps tasks in the SQLite file it names."""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path

import anyio
import pytest
from fastapi.testclient import TestClient

from fastapi_offload import Offload, TaskState


def test_the_durability_example_writes_every_task_to_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "offload.db"
    monkeypatch.setenv("OFFLOAD_STORE", f"sqlite:///{db}")
    import docs_src.durability_app as example

    example = importlib.reload(example)  # it reads OFFLOAD_STORE when imported
    with TestClient(example.app) as client:
        ids = client.post("/orders/7").json()
        client.portal.call(example.offload.join)  # type: ignore[union-attr]  # inside `with`
        for task_id in ids.values():
            assert client.get(f"/tasks/{task_id}").json()["state"] == "succeeded"
    with sqlite3.connect(db) as raw:
        rows = dict(raw.execute("SELECT id, state FROM tasks").fetchall())
    assert rows == {task_id: "succeeded" for task_id in ids.values()}

    async def read_back() -> set[TaskState]:
        # Another Offload on the same file (another worker, or the next deploy).
        async with Offload(store=f"sqlite:///{db}") as other:
            return {(await other.status(task_id)).state for task_id in ids.values()}

    assert anyio.run(read_back) == {TaskState.SUCCEEDED}
