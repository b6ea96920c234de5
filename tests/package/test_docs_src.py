"""Every file under docs_src/ is imported and run here, the way its page describes it."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI

from fastapi_offload import (
    Backend,
    BackendUnavailable,
    NotOffloadable,
    Offload,
    OffloadTasks,
    QueueFull,
    TaskCall,
    TaskState,
)

from ..conftest import ROOT
from ..helpers import serve

pytestmark = pytest.mark.anyio

DOCS_SRC = ROOT / "docs_src"

# One entry per file; test_every_file_has_a_test keeps this list complete.
EXERCISED = {
    "backend_template",
    "backend_usage",
    "backend_worker",
    "cancel_app",  # tests/package/test_docs_results.py
    "dashboard_app",  # tests/web/test_dashboard.py
    "config_reference",  # tests/package/test_docs.py
    "dependencies_app",  # tests/package/test_docs_dependencies.py
    "durability_app",  # tests/package/test_docs_durability.py
    "keys_app",  # tests/package/test_docs_keys.py
    "lanes_app",
    "lifespans_app",  # tests/package/test_docs_lifespans.py
    "lanes_jobs",
    "lanes_pickle",
    "metrics_app",  # tests/web/test_metrics.py
    "migrating_order",
    "monitoring_app",
    "monitoring_block",
    "owner_app",
    "progress_app",  # tests/package/test_docs_results.py
    "quickstart_after",
    "quickstart_before",
    "quickstart_lifespan",
    "quickstart_own_lifespan",
    "reliability_app",
    "results_app",  # tests/package/test_docs_results.py
    "retries_app",  # tests/package/test_docs_results.py
    "schedules_app",  # tests/package/test_docs_keys.py
    "security_requeue",  # tests/package/test_docs_security.py
    "status_app",
}


def test_every_file_has_a_test() -> None:
    files = {path.stem for path in DOCS_SRC.glob("*.py") if path.stem != "__init__"}
    assert files == EXERCISED


@asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client; no lifespan (the apps that have one are run with `serve`)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def media_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Set before the lifespan starts, so the process workers it starts inherit it.
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path))
    return tmp_path


# -- quickstart ------------------------------------------------------------------------


async def test_quickstart_before_runs_the_task_with_background_tasks() -> None:
    from docs_src import quickstart_before as example

    async with client_for(example.app) as client:
        response = await client.post("/signups", params={"email": "ada@example.com"})
    assert response.status_code == 202
    assert example.OUTBOX[-1] == "ada@example.com"


async def test_quickstart_after_one_word_change_without_a_lifespan() -> None:
    from docs_src import quickstart_after as example

    async with client_for(example.app) as client:
        response = await client.post("/signups", params={"email": "bob@example.com"})
    assert response.status_code == 202
    # Without a lifespan the tasks run inside the request's ASGI call, after the
    # response: done by the time the in-process call returns, as with BackgroundTasks.
    assert example.OUTBOX[-1] == "bob@example.com"


async def test_quickstart_lifespan_runs_the_thumbnail_in_a_worker_process(
    media_dir: Path,
) -> None:
    from docs_src import quickstart_lifespan as example

    async with serve(example.app, example.offload) as client:
        response = await client.post("/images/3")
        assert response.status_code == 202
        task_id = response.json()["task_id"]
        await example.offload.join()
        status = (await client.get(f"/tasks/{task_id}")).json()
    assert status["state"] == "succeeded", status
    assert status["lane"] == "process"
    assert status["name"] == "docs_src.quickstart_lifespan.make_thumbnail"
    assert (media_dir / "thumbnail-3.pgm").read_bytes().startswith(b"P5 128 128 255\n")


async def test_quickstart_own_lifespan_drains_before_the_users_shutdown() -> None:
    from docs_src import quickstart_own_lifespan as example

    async with example.app.router.lifespan_context(example.app):
        assert example.db.connected
        async with client_for(example.app) as client:
            assert (await client.get("/")).json() == {"hello": "world"}
        # No join(): leaving the lifespan drains the task before the db closes.
    assert example.db.visits == ["/"]
    assert not example.db.connected


# -- lanes -----------------------------------------------------------------------------


async def test_lanes_app_routes_each_call_as_commented() -> None:
    from docs_src import lanes_app as example

    async with serve(example.app, example.offload) as client:
        lanes = (await client.post("/reports/7")).json()
        await example.offload.join()
        stats = example.offload.stats()
    assert lanes == ["process", "thread", "thread", "process", "loop", "thread"]
    assert {name: lane.succeeded for name, lane in stats.lanes.items()} == {
        "loop": 1,
        "thread": 3,
        "process": 2,
    }
    assert sum(lane.failed for lane in stats.lanes.values()) == 0


async def test_routing_order_as_documented() -> None:
    # docs/lanes.md: per-call option > routing rule > configured backend > decorator > kind.
    from docs_src.lanes_jobs import checksum, export_csv, notify, send_email

    from fastapi_offload.testing import RecordingBackend

    async with Offload(routes={"*.send_email": "process", "*.checksum": "thread"}) as offload:
        by_option = await offload.options(lane="process").submit(checksum, b"x", rounds=1)
        by_rule = await offload.submit(send_email, "a@example.com", "rule beats @io_bound")
        by_rule_too = await offload.submit(checksum, b"x", rounds=1)
        await offload.join()
    async with Offload(backend=RecordingBackend(), routes={"*.export_csv": "thread"}) as remote:
        rule_over_backend = await remote.submit(export_csv, 1)
        backend_over_decorator = await remote.submit(send_email, "b@example.com", "remote")
        await remote.join()
    async with Offload() as plain:
        by_decorator = await plain.submit(checksum, b"x", rounds=1)
        by_kind = [await plain.submit(export_csv, 1), await plain.submit(notify, 1)]
        await plain.join()
    assert (by_option.lane, by_rule.lane, by_rule_too.lane) == ("process", "process", "thread")
    assert (rule_over_backend.lane, backend_over_decorator.lane) == ("thread", "recording")
    assert by_decorator.lane == "process"
    assert [handle.lane for handle in by_kind] == ["thread", "loop"]


async def test_lanes_jobs_declarations() -> None:
    from docs_src import lanes_jobs

    from fastapi_offload._decorators import declared

    assert declared(lanes_jobs.checksum) is not None
    assert lanes_jobs.checksum(b"x", rounds=1) == lanes_jobs.checksum(b"x", rounds=1)
    webhook = declared(lanes_jobs.call_webhook)
    assert webhook is not None
    assert (webhook.lane, webhook.timeout, webhook.retries, webhook.retry_delay) == (
        "thread",
        10,
        3,
        2.0,
    )
    assert declared(lanes_jobs.export_csv) is None


async def test_lanes_pickle_errors_are_the_ones_shown_on_the_page() -> None:
    from docs_src import lanes_pickle

    errors = await lanes_pickle.main()
    assert len(errors) == 2
    assert "argument 0 (Document) cannot be pickled" in errors[0]
    assert "defined inside another function" in errors[1]
    # The page shows the output of `python -m docs_src.lanes_pickle`: same text.
    page = (DOCS_SRC.parent / "docs" / "lanes.md").read_text()
    for error in errors:
        shown = error.replace("docs_src.lanes_pickle.", "__main__.")
        assert shown in page, f"docs/lanes.md does not show:\n{shown}"


# -- status ----------------------------------------------------------------------------


async def test_status_app_202_location_router_and_own_endpoint() -> None:
    from docs_src import status_app as example

    async with serve(example.app, example.offload) as client:
        response = await client.post("/invoices/5/pdf")
        assert response.status_code == 202
        task_id = response.json()["task_id"]
        assert response.headers["Location"] == f"/jobs/{task_id}"
        early = (await client.get(f"/jobs/{task_id}")).json()
        assert early["state"] in ("pending", "running")
        await example.offload.join()
        done = (await client.get(f"/invoices/5/pdf/{task_id}")).json()
        unknown_own = await client.get("/invoices/5/pdf/no-such-task")
        unknown_router = await client.get("/jobs/no-such-task")
    assert done == {"invoice_id": 5, "state": "succeeded", "done": True}
    assert unknown_own.status_code == 404
    assert unknown_router.status_code == 404
    assert unknown_router.json()["state"] == "unknown"


# -- reliability -----------------------------------------------------------------------


async def test_reliability_app_runs_the_order_tasks() -> None:
    from docs_src import reliability_app as example

    assert example.offload.config.timeout == 300
    assert example.offload.config.max_pending == 100
    assert example.offload.config.shutdown_timeout == 20
    async with serve(example.app, example.offload) as client:
        task_id = (await client.post("/orders/1")).json()["task_id"]
        await example.offload.join()
        info = await example.offload.status(task_id)
        stats = example.offload.stats()
    assert info.state is TaskState.SUCCEEDED and info.lane == "thread" and info.attempts == 1
    assert stats.lanes["process"].succeeded == 1 and stats.lanes["thread"].succeeded == 2


async def test_reliability_queue_full_handler_wins_over_the_default_503() -> None:
    from docs_src import reliability_app as example

    app = FastAPI(exception_handlers={QueueFull: example.busy})
    offload = Offload(max_pending=1, thread_workers=1)

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        for order_id in range(3):
            tasks.add_task(example.send_receipt, order_id)

    async with serve(app, offload) as client:
        response = await client.post("/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    assert response.json()["error"].startswith("too many orders")


# -- monitoring ------------------------------------------------------------------------


@pytest.fixture
def root_logging() -> Iterator[None]:
    """monitoring_app's lifespan calls logging.basicConfig: undo it after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


async def test_monitoring_app_carries_worker_logs_and_serves_stats(
    root_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    from docs_src import monitoring_app as example

    caplog.set_level(logging.INFO)
    async with example.app.router.lifespan_context(example.app):
        async with client_for(example.app) as client:
            response = await client.post("/catalog/import", params={"rows": 5})
            assert response.status_code == 202
            await example.offload.join()
            stats = (await client.get("/stats")).json()
    [record] = [r for r in caplog.records if r.getMessage() == "imported 5 rows"]
    assert record.name == "docs_src.monitoring_app"
    assert record.process != os.getpid()
    assert getattr(record, "offload_task_id", None) == response.json()["task_id"]
    assert stats["lanes"]["process"]["succeeded"] == 1
    assert stats["process_cpu_seconds"] >= 0


async def test_monitoring_block_is_reported_with_its_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from docs_src import monitoring_block as example

    async with serve(example.app, example.offload) as client:
        task_id = (await client.post("/prices/refresh")).json()["task_id"]
        await example.offload.join()
        stats = example.offload.stats()
    [report] = [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]
    assert f"task docs_src.monitoring_block.refresh_prices (id {task_id})" in report
    assert "in load_prices" in report and "time.sleep(0.3)" in report
    assert stats.loop_blocks == 1 and stats.longest_loop_block >= 0.3


# -- migrating -------------------------------------------------------------------------


async def test_migrating_order_runs_the_steps_in_order(tmp_path: Path) -> None:
    from docs_src import migrating_order as example

    path = tmp_path / "page.html"
    async with client_for(example.app) as client:
        params = {"source": "https://example.com/page", "path": str(path)}
        assert (await client.post("/mirror", params=params)).status_code == 202
    assert await anyio.Path(path).read_text() == "contents of https://example.com/page"
    assert await anyio.Path(f"{path}.idx").read_text() == "3"


# -- write your own backend ------------------------------------------------------------


def always_fails(message: str) -> None:
    raise ValueError(message)


async def test_backend_template_round_trip(tmp_path: Path) -> None:
    from docs_src import backend_usage as example
    from docs_src.backend_template import SQLiteBackend, Worker

    # The worker module's imports resolve (running it would start the worker loop).
    importlib.import_module("docs_src.backend_worker")
    backend = example.offload.backend
    assert isinstance(backend, SQLiteBackend) and isinstance(backend, Backend)
    backend.path = str(tmp_path / "tasks.sqlite3")
    worker = Worker(backend.path, example.resize_image, always_fails)
    async with serve(example.app, example.offload) as client:
        response = await client.post("/images/9/resize")
        assert response.status_code == 202
        task_id = response.json()["task_id"]
        queued = (await client.get(f"/tasks/{task_id}")).json()
        assert (queued["state"], queued["lane"]) == ("pending", "sqlite")
        assert await anyio.to_thread.run_sync(worker.run_once)
        assert not await anyio.to_thread.run_sync(worker.run_once)  # nothing left
        done = (await client.get(f"/tasks/{task_id}")).json()
        assert (done["state"], done["attempts"]) == ("succeeded", 1)

        # Retries: the worker puts a failed attempt back until retries are used up.
        options = example.offload.options(retries=1, retry_delay=0)
        failing = await options.submit(always_fails, "boom")
        assert await anyio.to_thread.run_sync(worker.run_once)
        assert (await example.offload.status(failing.id)).state is TaskState.PENDING
        assert await anyio.to_thread.run_sync(worker.run_once)
        info = await example.offload.status(failing.id)
        assert (info.state, info.attempts, info.error) == (
            TaskState.FAILED,
            2,
            "ValueError('boom')",
        )


async def test_backend_template_refuses_what_cannot_travel(tmp_path: Path) -> None:
    from docs_src.backend_template import SQLiteBackend, Worker
    from docs_src.backend_usage import resize_image

    backend = SQLiteBackend(str(tmp_path / "tasks.sqlite3"))
    async with Offload(backend=backend) as offload:
        with pytest.raises(NotOffloadable, match="cannot travel as JSON to the sqlite backend"):
            await offload.submit(always_fails, object())  # type: ignore[arg-type]  # the point
        handle = await offload.submit(always_fails, "not registered")
        assert Worker(backend.path, resize_image).run_once()
        info = await offload.status(handle.id)
    assert info.state is TaskState.FAILED
    assert info.error is not None
    assert info.error.startswith("refused a message for 'tests.package.test_docs_src.always_fails'")


async def test_backend_template_unreachable_database_is_a_503(tmp_path: Path) -> None:
    from docs_src.backend_template import SQLiteBackend

    backend = SQLiteBackend(str(tmp_path / "tasks.sqlite3"))
    offload = Offload(backend=backend)
    app = FastAPI(lifespan=offload.lifespan)

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        tasks.add_task(always_fails, "never sent")

    async with serve(app, offload) as client:
        backend.path = str(tmp_path / "missing-directory" / "tasks.sqlite3")
        response = await client.post("/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["detail"].startswith("the task database")
    with pytest.raises(BackendUnavailable):
        await backend.submit(TaskCall(id="x", name="tests.package.test_docs_src.always_fails"))


async def test_owner_app_serves_each_task_to_its_owner_only() -> None:
    from docs_src import owner_app as example

    ada, bob = ({"Authorization": f"Bearer token-of-{name}"} for name in ("ada", "bob"))
    async with serve(example.app, example.offload) as client:
        started = await client.post("/reports/2026-05", headers=ada)
        task_id = started.json()["task_id"]
        await example.offload.join()
        mine = await client.get(f"/tasks/{task_id}", headers=ada)
        theirs = await client.get(f"/tasks/{task_id}", headers=bob)
        stream = await client.get(f"/tasks/{task_id}/events", headers=bob)
        cancel = await client.delete(f"/tasks/{task_id}", headers=bob)
        unknown = await client.get(f"/tasks/{'0' * 32}", headers=bob)
        anonymous = await client.get(f"/tasks/{task_id}")
    assert started.status_code == 202
    assert mine.status_code == 200 and mine.json()["result"]["url"] == "/reports/2026-05.pdf"
    assert "owner" not in mine.json()
    assert (theirs.status_code, stream.status_code, cancel.status_code) == (404, 404, 404)
    assert theirs.json() == unknown.json() | {"id": task_id}  # nothing tells them apart
    assert anonymous.status_code == 401
