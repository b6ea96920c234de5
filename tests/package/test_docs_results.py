"""The snippets of the results, progress, cancel and retries docs, run."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import anyio
import httpx
import pytest

from fastapi_offload import TaskState

from ..conftest import run_server
from ..helpers import serve
from .test_docs import chromium

pytestmark = pytest.mark.anyio


async def test_results_app_returns_the_kept_count() -> None:
    from docs_src import results_app as example

    async with serve(example.app, example.offload) as client:
        task_id = (await client.post("/counts", params={"text": "a b a c"})).json()["task_id"]
        await example.offload.join()
        counted = await client.get(f"/counts/{task_id}")
        status = (await client.get(f"/tasks/{task_id}")).json()
        missing = await client.get(f"/counts/{'0' * 32}")
    assert counted.json() == {"words": 4, "distinct": 3}
    assert status["result"] == {"words": 4, "distinct": 3}
    assert missing.status_code == 404


async def test_progress_app_serves_its_page_and_streams_the_progress() -> None:
    from docs_src import progress_app as example

    async with serve(example.app, example.offload) as client:
        started = (await client.post("/albums/7/resize", params={"photos": 4})).json()
        page = await client.get(started["page"])
        stream = await client.get(f"/tasks/{started['task_id']}/events")
        info = await example.offload.status(started["task_id"])
    assert page.headers["content-type"].startswith("text/html")
    assert "new EventSource(`/tasks/${task}/events`)" in page.text
    assert info.state is TaskState.SUCCEEDED
    assert (info.progress, info.progress_message) == (1.0, "4 of 4 photos")
    assert '"progress_message":"4 of 4 photos"' in stream.text
    assert stream.text.rstrip().endswith('data: {"state":"succeeded"}')


def test_progress_page_updates_in_a_real_browser(tmp_path: Path) -> None:
    browser = chromium()
    app = "tests.apps.docs_progress_server:app"
    with run_server(app, tmp_path / "server.log") as server:
        started = httpx.post(f"{server.url}/albums/1/resize", params={"photos": 10}).json()
        # Chromium runs the page's script; virtual time lets the stream play out.
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
            "--dump-dom", f"{server.url}{started['page']}",
        ]  # fmt: skip
        deadline = time.monotonic() + 60
        dom = ""
        while time.monotonic() < deadline:
            dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
            if "succeeded" in dom:
                break
    assert '<output id="message">succeeded</output>' in dom, dom


async def test_cancel_app_cancels_a_process_task_and_stops_a_thread_task() -> None:
    from docs_src import cancel_app as example

    admin = httpx.BasicAuth("admin", "change me")
    async with serve(example.app, example.offload) as client:
        video = (await client.post("/videos/1/transcode")).json()["task_id"]
        export = (await client.post("/exports/orders")).json()["task_id"]
        await wait_running(example, video)
        await wait_running(example, export)
        refused = await client.delete(f"/tasks/{video}")
        wrong = await client.delete(f"/tasks/{video}", auth=httpx.BasicAuth("admin", "x"))
        cancelled = await client.delete(f"/tasks/{video}", auth=admin)
        stopped = await client.post(f"/exports/{export}/stop", auth=admin)
        with anyio.fail_after(10):
            await example.offload.join()
        again = await client.post(f"/exports/{export}/stop", auth=admin)
        infos = [await example.offload.status(i) for i in (video, export)]
    assert (refused.status_code, wrong.status_code, cancelled.status_code) == (401, 401, 202)
    assert stopped.json() == {"cancelled": True} and again.json() == {"cancelled": False}
    assert [(i.state, i.error) for i in infos] == [
        (TaskState.CANCELLED, "cancelled by request")
    ] * 2


async def wait_running(example: object, task_id: str) -> None:
    offload = example.offload  # type: ignore[attr-defined]
    with anyio.fail_after(20):
        while True:
            if (await offload.status(task_id)).state is TaskState.RUNNING:
                return
            await anyio.sleep(0.02)


async def test_retries_app_declares_its_policy() -> None:
    from docs_src import retries_app as example

    from fastapi_offload._decorators import declared

    defaults = declared(example.sync_contact)
    assert defaults is not None
    assert (defaults.retries, defaults.retry_delay, defaults.retry_backoff) == (5, 1, True)
    assert defaults.retry_on == (ConnectionError, example.RateLimited)
