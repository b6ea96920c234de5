"""Delayed tasks under a real uvicorn with a durable store: a task added with a delay
survives `kill -9` of its server (a restart, or another server sharing the store, runs
it once, when due) and a graceful stop (it is kept, not cancelled)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.apps.delayed_jobs import stamps
from tests.conftest import Server, StartServer

from .test_durability import store_env as store_env  # the fixture: SQLite, and Redis

APP = "tests.apps.delayed_app:app"
pytestmark = pytest.mark.server
ENDED = {"succeeded", "failed", "interrupted", "cancelled"}


def add_later(server: Server, delay: float, out: Path) -> tuple[str, float]:
    """A delayed task added through the app: its id and due time (as its status says)."""
    with server.client() as client:
        task_id = client.post("/later", params={"delay": delay, "path": str(out)}).json()["id"]
        body = client.get(f"/tasks/{task_id}").json()
    assert body["state"] == "scheduled", body
    return task_id, float(body["due_at"])


def pid_of(server: Server) -> int:
    with server.client() as client:
        return int(client.get("/pid").json())


def test_a_delayed_task_survives_kill_9_and_runs_once_after_the_restart(
    start_server: StartServer, tmp_path: Path, store_env: dict[str, str]
) -> None:
    out = tmp_path / "ran.txt"
    first = start_server(APP, env=store_env)
    task_id, due_at = add_later(first, 3, out)
    first.kill()

    second = start_server(APP, env=store_env)
    done = second.wait_for_state(task_id, ENDED, timeout=30)
    time.sleep(1.0)  # a second run, were there one, would show by now
    runs = stamps(out)
    print(f"ran {runs[0][0] - due_at:.3f} s after its due time (kill -9, then a restart)")
    assert done["state"] == "succeeded", done
    assert [pid for _, pid in runs] == [pid_of(second)], runs  # once, in the restarted server
    assert runs[0][0] >= due_at, "it ran before it was due"
    assert done["due_at"] == due_at
    assert "is taken over from a process that stopped" in second.log()


def test_a_server_sharing_the_store_runs_the_delayed_task_of_one_killed(
    start_server: StartServer, tmp_path: Path, store_env: dict[str, str]
) -> None:
    out = tmp_path / "ran.txt"
    killed, survivor = start_server(APP, env=store_env), start_server(APP, env=store_env)
    task_id, due_at = add_later(killed, 3, out)
    killed.kill()

    done = survivor.wait_for_state(task_id, ENDED, timeout=30)
    time.sleep(1.0)
    runs = stamps(out)
    print(f"ran {runs[0][0] - due_at:.3f} s after its due time (taken over by a peer)")
    assert done["state"] == "succeeded", done
    assert [pid for _, pid in runs] == [pid_of(survivor)], runs
    assert runs[0][0] >= due_at, "it ran before it was due"


def test_a_graceful_stop_keeps_a_delayed_task_for_the_next_start(
    start_server: StartServer, tmp_path: Path, store_env: dict[str, str]
) -> None:
    out = tmp_path / "ran.txt"
    first = start_server(APP, env=store_env)
    task_id, due_at = add_later(first, 3, out)
    first.stop()  # SIGTERM, as a process manager stops it
    assert "Application shutdown complete" in first.log()  # the lifespan's shutdown ran
    assert "1 scheduled task(s) not due yet stay in the task store" in first.log()
    assert stamps(out) == []

    second = start_server(APP, env=store_env)
    done = second.wait_for_state(task_id, ENDED, timeout=30)
    runs = stamps(out)
    assert done["state"] == "succeeded", done
    assert [pid for _, pid in runs] == [pid_of(second)] and runs[0][0] >= due_at
