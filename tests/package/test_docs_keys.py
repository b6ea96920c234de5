"""docs/keys-and-schedules.md: its examples do what the page says."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient


def test_a_retried_post_gets_the_same_task_and_a_200(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the example's store: sqlite:///./offload.db
    import docs_src.keys_app as example

    example = importlib.reload(example)
    with TestClient(example.app) as client:
        first = client.post("/orders/7/receipt")
        again = client.post("/orders/7/receipt")
        other = client.post("/orders/8/receipt")
        assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
        assert first.json() == again.json() != other.json()

        reminder = client.post("/carts/3/reminder").json()["task_id"]
        assert client.post("/carts/3/reminder").json()["task_id"] == reminder
        status = client.get(f"/tasks/{reminder}").json()
        assert status["state"] == "scheduled"
        assert status["due_at"] == pytest.approx(time.time() + 3600, abs=60)

        naive = client.post("/orders/9/receipt/at", params={"at": "2026-12-24T18:00:00"})
        assert naive.status_code == 422
        due = client.post("/orders/9/receipt/at", params={"at": "2099-12-24T18:00:00Z"})
        assert client.get(f"/tasks/{due.json()['task_id']}").json()["state"] == "scheduled"
    assert (tmp_path / "offload.db").exists()


def test_the_periodic_tasks_are_listed_with_their_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    import docs_src.schedules_app as example

    example = importlib.reload(example)
    with TestClient(example.app) as client:
        listed = {item["name"]: item for item in client.get("/schedules").json()}
    assert set(listed) == {
        "docs_src.schedules_app.prune_sessions",
        "docs_src.schedules_app.nightly_report",
    }
    prune = listed["docs_src.schedules_app.prune_sessions"]
    assert prune["next_run"] % 300 == 0 and prune["next_run"] > time.time() - 1
    nightly = listed["docs_src.schedules_app.nightly_report"]
    assert nightly["catch_up"] is True and time.gmtime(nightly["next_run"]).tm_hour == 3
