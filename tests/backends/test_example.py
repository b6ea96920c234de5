"""`examples/remote`: one unchanged app, switched between local, Celery and RQ by env alone.

Each run is the real thing: the app under uvicorn in a subprocess, and for the remote
modes the example's own worker commands (`celery -A examples.remote.celery_worker
worker`, `rq worker --worker-class examples.remote.rq_worker.Worker`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import StartServer
from .conftest import EXAMPLE_QUEUE

pytestmark = [pytest.mark.server]


def _env(mode: str, request: pytest.FixtureRequest, reports: Path) -> dict[str, str]:
    env = {"OFFLOAD_BACKEND": mode, "REPORTS_DIR": str(reports)}
    if mode == "celery":
        request.getfixturevalue("celery_example_worker")
        url: str = request.getfixturevalue("celery_url")
        env |= {
            "OFFLOAD_CELERY_BROKER_URL": url,
            "OFFLOAD_CELERY_RESULT_BACKEND": url,
            "OFFLOAD_CELERY_QUEUE": EXAMPLE_QUEUE,
        }
    elif mode == "rq":
        request.getfixturevalue("rq_example_worker")
        env |= {"OFFLOAD_REDIS_URL": request.getfixturevalue("rq_url")}
        env["OFFLOAD_RQ_QUEUE"] = EXAMPLE_QUEUE
    return env


MODES = [
    "local",
    pytest.param("celery", marks=pytest.mark.redis),
    pytest.param("rq", marks=pytest.mark.redis),
]


@pytest.mark.parametrize("mode", MODES)
def test_the_same_app_runs_its_tasks_where_the_environment_says(
    mode: str, request: pytest.FixtureRequest, start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("examples.remote.app:app", env=_env(mode, request, tmp_path))
    with server.client() as client:
        assert client.get("/health").json() == {"status": "ok", "backend": mode}
        response = client.post("/reports/7")
    assert response.status_code == 202, response.text
    body = response.json()
    report = server.wait_for_state(body["task_id"], {"succeeded", "failed"})
    assert report["state"] == "succeeded", f"{report}\n{server.log()}"
    assert report["name"] == "examples.remote.jobs.build_report"
    announce = server.wait_for_state(body["announce_id"], {"succeeded", "failed"})
    assert announce["state"] == "succeeded", announce
    written = json.loads((tmp_path / "report-7.json").read_text())
    # Local mode uses the process lane (the task is @cpu_bound); remote modes, a worker.
    assert written["report_id"] == 7 and written["pid"] != body["pid"]
    assert (tmp_path / "announce-7.txt").exists()
