"""The dashboard router: its snapshot, routes and protection (in-process), and the page
itself in a real headless Chromium against a real uvicorn server."""

from __future__ import annotations

import base64
import fcntl
import gc
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException

from fastapi_offload import (
    ConfigError,
    Offload,
    OffloadTasks,
    StoreUnavailable,
    io_bound,
    report_progress,
)
from fastapi_offload.testing import RecordingBackend
from fastapi_offload.web.dashboard import feed as _dashboard_feed
from fastapi_offload.web.dashboard import router as _dashboard

from ..apps import dashboard_app as jobs
from ..conftest import ROOT, run_server
from ..helpers import serve
from ..package.test_docs import chromium

ASSETS = Path(_dashboard.__file__).parent / "assets"


@asynccontextmanager
async def dashboard(
    offload: Offload | None = None, **options: Any
) -> AsyncIterator[tuple[Offload, httpx.AsyncClient]]:
    offload = offload or Offload(thread_workers=2)
    app = FastAPI(lifespan=offload.lifespan)
    if "dependencies" not in options:
        options.setdefault("public", True)  # an in-process test client: nobody else
    app.include_router(offload.dashboard_router(**options))
    async with serve(app, offload) as client:
        yield offload, client


async def snapshot(client: httpx.AsyncClient, prefix: str = "/offload") -> dict[str, Any]:
    response = await client.get(f"{prefix}/snapshot")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]  # JSON of a dict


def by_name(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {task["name"].rsplit(".", 1)[-1]: task for task in found["tasks"]}


def lane(found: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in found["lanes"] if item["name"] == name)


def fails() -> None:
    raise ValueError("no such photo: <img src=x onerror=alert(1)>")


def answer(value: object) -> object:
    return value


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    with anyio.fail_after(10):
        while True:
            if await condition():
                return
            await anyio.sleep(0.02)


# -- the snapshot ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_snapshot_counts_lanes_and_lists_recent_tasks_with_errors() -> None:
    async with dashboard() as (offload, client):
        done = await offload.options(keep_result=True).submit(answer, {"count": 3})
        await offload.submit(fails)
        await offload.join()
        found = await snapshot(client)
    thread = lane(found, "thread")
    assert (thread["succeeded"], thread["failed"], thread["capacity"]) == (1, 1, 2)
    assert (thread["running"], thread["waiting"], thread["retried"]) == (0, 0, 0)
    tasks = by_name(found)
    assert [t["name"].rsplit(".", 1)[-1] for t in found["tasks"]] == ["fails", "answer"]
    assert tasks["answer"]["id"] == done.id and tasks["answer"]["state"] == "succeeded"
    assert tasks["answer"]["result"] == '{"count":3}' and tasks["answer"]["duration"] >= 0
    assert tasks["fails"]["state"] == "failed"
    assert tasks["fails"]["error"] == "ValueError('no such photo: <img src=x onerror=alert(1)>')"
    # Arguments stay private unless the router is built with show_arguments=True.
    assert found["show_arguments"] is False and "arguments" not in tasks["answer"]
    assert found["cancel"] is False and found["backend"] is None


@pytest.mark.anyio
async def test_the_snapshot_follows_progress_while_a_task_runs() -> None:
    release = threading.Event()

    @io_bound
    def resize(photos: int) -> int:
        report_progress(0.5, f"{photos // 2} of {photos} photos")
        release.wait(10)
        return photos

    async with dashboard() as (offload, client):
        await offload.submit(resize, 8)

        async def halfway() -> bool:
            return bool(by_name(await snapshot(client))["resize"]["progress"] == 0.5)

        await until(halfway)
        running = by_name(await snapshot(client))["resize"]
        release.set()
        await offload.join()
        ended = by_name(await snapshot(client))["resize"]
    assert (running["state"], running["progress_message"], running["live"]) == (
        "running",
        "4 of 8 photos",
        True,
    )
    assert (ended["state"], ended["progress"], ended["live"]) == ("succeeded", 0.5, False)


@pytest.mark.anyio
async def test_show_arguments_shows_a_short_repr() -> None:
    def save_photo(data: bytes, album: list[int], *, size: int) -> None:
        pass

    async with dashboard(show_arguments=True) as (offload, client):
        await offload.submit(answer, "x" * 500)
        await offload.submit(save_photo, b"\0" * 10_000_000, list(range(100)), size=3)
        await offload.join()
        tasks = by_name(await snapshot(client))
    assert tasks["answer"]["arguments"] == f"'{'x' * 17}...{'x' * 18}'"
    assert tasks["save_photo"]["arguments"] == "<10000000 bytes>, [0, 1, 2, 3, ...], size=3"


class Photo:
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("show_arguments", [False, True])
async def test_an_ended_task_is_not_kept_alive_by_the_page(show_arguments: bool) -> None:
    photo = Photo()
    kept = weakref.ref(photo)
    async with dashboard(show_arguments=show_arguments) as (offload, client):
        await offload.submit(answer, photo)
        del photo
        await offload.join()
        found = by_name(await snapshot(client))["answer"]  # the repr is made here
        gc.collect()
        assert kept() is None  # the arguments went with the task (a large upload would)
    if show_arguments:  # kept until the page made their repr, then let go
        assert found["arguments"].startswith(f"<{__name__}.Photo object at 0x")
    else:
        assert "arguments" not in found


@pytest.mark.anyio
async def test_loop_blocks_cpu_advice_and_a_crashed_worker_are_reported() -> None:
    def crunch() -> int:  # pure Python on the thread lane: the advisor flags it
        end, count = time.thread_time() + 0.2, 0
        while time.thread_time() < end:
            count += 1
        return count

    offload = Offload(thread_workers=2, process_workers=1, loop_block_threshold=0.05)
    async with dashboard(offload) as (offload, client):
        for call in (jobs.refresh_prices, crunch):
            await offload.submit(call)
        await offload.submit(jobs.render_video, 1)
        await offload.join()
        found = await snapshot(client)
    blocks = found["loop_blocks"]
    assert blocks["count"] == 1 and blocks["longest"] >= 0.2
    [block] = blocks["recent"]
    assert block["name"].endswith("dashboard_app.refresh_prices") and block["seconds"] >= 0.2
    assert "time.sleep(0.2)" in (block["stack"] or "") and "dashboard_app.py" in block["where"]
    [advice] = found["advice"]
    assert advice["name"].endswith("crunch") and 0.5 <= advice["share"] <= 1.0
    assert advice["promoted"] is False
    assert found["crashes"]["count"] == 1
    [crashed] = found["crashes"]["tasks"]
    assert crashed["name"].endswith("render_video") and "WorkerCrashed" in crashed["error"]


@pytest.mark.anyio
async def test_refused_and_discarded_tasks() -> None:
    offload = Offload(thread_workers=1, max_pending=1)
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.dashboard_router(public=True))
    release = threading.Event()

    @app.post("/two")
    async def two(tasks: OffloadTasks) -> None:
        tasks.add_task(release.wait, 10)
        tasks.add_task(release.wait, 10)  # the lane is full: 503

    @app.post("/broken")
    async def broken(tasks: OffloadTasks) -> None:
        tasks.add_task(answer, "never")
        raise HTTPException(400)  # the task is not accepted

    async with serve(app, offload) as client:
        assert (await client.post("/two")).status_code == 503
        assert (await client.post("/broken")).status_code == 400
        found = await snapshot(client)
        release.set()
    # /two's first task was not accepted either (its request failed): no row, like /broken's.
    assert found["rejected"] == 1
    assert [task["state"] for task in found["tasks"]] == ["rejected"]
    assert "lane was full" in found["tasks"][0]["error"]


@pytest.mark.anyio
async def test_only_recent_tasks_are_kept_and_running_ones_stay_shown() -> None:
    release = threading.Event()
    async with dashboard() as (offload, client):
        slow = await offload.submit(release.wait, 10)
        for value in range(_dashboard_feed.RECENT + 20):
            await offload.submit(answer, value)
        await until(lambda: _idle_but_one(offload))
        found = await snapshot(client)
        release.set()
    assert len(found["tasks"]) == _dashboard_feed.SHOWN
    assert found["tasks"][-1]["id"] == slow.id  # the oldest, still running: shown


async def _idle_but_one(offload: Offload) -> bool:
    return offload.stats().lanes["thread"].succeeded == _dashboard_feed.RECENT + 20


@pytest.mark.anyio
async def test_each_app_sees_only_its_own_runtime() -> None:
    async with dashboard() as (first, client), dashboard() as (_, other):
        await first.submit(answer, 1)
        await first.join()
        mine, theirs = await snapshot(client), await snapshot(other)
    assert len(mine["tasks"]) == 1 and theirs["tasks"] == []
    assert lane(theirs, "thread")["succeeded"] == 0


@pytest.mark.anyio
async def test_without_a_lifespan_the_apps_default_runtime_is_shown() -> None:
    offload = Offload()  # never started: requests use the app's default runtime
    app = FastAPI()
    app.include_router(offload.dashboard_router(public=True))

    @app.post("/job")
    async def job(tasks: OffloadTasks) -> None:
        tasks.add_task(answer, 1)

    async with serve(app) as client:
        assert (await snapshot(client))["tasks"] == []
        await client.post("/job")  # without a lifespan, the task ran inside the request
        found = await snapshot(client)
    assert [(t["name"], t["state"]) for t in found["tasks"]] == [
        (f"{__name__}.answer", "succeeded")
    ]


@pytest.mark.anyio
async def test_with_a_memory_store_the_snapshot_says_this_process_only() -> None:
    # Issue 19: under --workers 2 each reload showed one process, and nothing said so.
    async with dashboard() as (offload, client):
        await offload.submit(answer, 1)
        await offload.join()
        found = await snapshot(client)
    here = f"{socket.gethostname()}:{os.getpid()}"
    assert (found["shared"], found["process"]) == (False, here)
    [process] = found["processes"]
    assert (process["process"], process["here"]) == (here, True)
    assert [(t["process"], t["here"]) for t in found["tasks"]] == [(here, True)]
    assert {lane["name"]: lane["capacity"] for lane in process["lanes"]}["thread"] == 2


@pytest.mark.anyio
async def test_a_shared_store_shows_the_tasks_of_other_processes(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'tasks.db'}"
    release = threading.Event()
    async with dashboard(Offload(store=store)) as (_, client), Offload(store=store) as worker:
        elsewhere = await worker.submit(release.wait, 10)  # written to the shared store

        async def shown() -> bool:
            found = [t for t in (await snapshot(client))["tasks"] if t["id"] == elsewhere.id]
            return [(t["here"], t["state"]) for t in found] == [(False, "running")]

        await until(shown)  # the store writes in batches: pending first, then running
        release.set()


def heartbeat() -> None:
    pass


@pytest.mark.anyio
async def test_the_snapshot_lists_the_periodic_tasks_with_their_last_and_next_runs() -> None:
    offload = Offload()
    offload.every(seconds=0.2, overlap=True)(heartbeat)
    async with dashboard(offload) as (_, client):

        async def ran() -> bool:
            return bool((await snapshot(client))["schedules"][0]["last_state"] == "succeeded")

        await until(ran)
        found = await snapshot(client)
    [row] = found["schedules"]
    assert (row["name"], row["schedule"]) == (f"{__name__}.heartbeat", "every 0.2 s")
    assert (row["catch_up"], row["overlap"]) == (False, True)
    assert row["last_run"] <= found["now"] < row["next_run"]
    assert row["last_task_id"] in {task["id"] for task in found["tasks"]}  # an ordinary task
    assert found["store_error"] is None


@pytest.mark.anyio
async def test_without_periodic_tasks_the_snapshot_has_none_and_the_store_is_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offload = Offload()

    async def ticks(names: object) -> object:
        raise AssertionError("read without a periodic task")

    monkeypatch.setattr(offload._runtime.store, "ticks", ticks)
    async with dashboard(offload) as (_, client):
        assert (await snapshot(client))["schedules"] == []


@pytest.mark.anyio
async def test_a_periodic_run_sent_to_a_backend_shows_sent_and_a_store_failure_is_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    offload = Offload(backend=RecordingBackend())
    offload.cron("0 0 1 1 *")(heartbeat)  # no tick of its own during the test
    store = offload._runtime.store
    await store.claim_tick(f"{__name__}.heartbeat", 60.0, "sent-id", overlap=False)
    async with dashboard(offload) as (_, client):
        await offload.submit(heartbeat)  # a task row in the store, to lend its lane
        sent = offload.backend.calls[-1].id  # type: ignore[union-attr]  # RecordingBackend
        await store.claim_tick(f"{__name__}.heartbeat", 120.0, sent, overlap=False)
        [row] = (await snapshot(client))["schedules"]

        async def ticks(names: object) -> object:
            error = StoreUnavailable("the task store is unavailable")
            error.cause = "ConnectionError: refused"
            raise error

        monkeypatch.setattr(store, "ticks", ticks)
        await anyio.sleep(_dashboard_feed.CACHE)
        failed = await snapshot(client)
    assert (row["last_state"], row["last_task_id"], row["last_run"]) == ("sent", sent, 120.0)
    assert row["schedule"] == "cron 0 0 1 1 * (UTC)"
    [unread] = failed["schedules"]
    assert unread["last_run"] is None and unread["next_run"] > failed["now"]
    assert failed["store_error"] == "the task store is unavailable: ConnectionError: refused"


class NoWorkers(RecordingBackend):
    """A backend that can say how many workers consume its queue, as Celery's and RQ's do."""

    asked = 0

    async def workers(self) -> int:
        self.asked += 1
        return 0


@pytest.mark.anyio
async def test_a_backend_without_workers_is_shown() -> None:
    backend = NoWorkers()
    async with dashboard(Offload(backend=backend)) as (_, client):
        first = await snapshot(client)

        async def answered() -> bool:
            return (await snapshot(client))["workers"] is not None

        await until(answered)
        found = await snapshot(client)
    assert first["backend"] == "recording" and first["workers"] is None  # asked meanwhile
    assert found["workers"]["count"] == 0 and backend.asked == 1  # not on every snapshot


# -- routes ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_page_and_its_assets_are_served_from_the_package() -> None:
    async with dashboard(prefix="/ops") as (_, client):
        page = await client.get("/ops/")
        redirect = await client.get("/ops")
        script = await client.get("/ops/assets/dashboard.js")
        style = await client.get("/ops/assets/dashboard.css")
        missing = await client.get("/ops/assets/index.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert redirect.status_code == 307 and redirect.headers["location"].endswith("/ops/")
    assert 'src="assets/dashboard.js"' in page.text and 'href="assets/dashboard.css"' in page.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert style.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404
    # No CDN, nothing fetched from another origin: the page works offline.
    assert not re.search(r"https?://", page.text + script.text + style.text)


def test_the_script_never_writes_html() -> None:
    # Task names, errors and stacks are user data: textContent only.
    script = (ASSETS / "dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


@pytest.mark.anyio
async def test_the_event_stream_sends_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_dashboard, "STREAM_MAX", 0.6)  # the stream ends, the test reads it
    async with dashboard() as (offload, client):
        await offload.submit(answer, 1)
        await offload.join()
        stream = await client.get("/offload/events")
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.text.startswith("retry: 1000\n\n")
    events = re.findall(r"event: snapshot\ndata: (.*)\n\n", stream.text)
    assert len(events) == 1  # nothing changed after the first
    assert "event: patch" not in stream.text  # not even this process's figures
    assert json.loads(events[0])["tasks"][0]["state"] == "succeeded"


@pytest.mark.anyio
async def test_the_stream_sends_changes_after_its_first_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 15, finding 7: each page got the whole snapshot (~40 KB) twice a second.
    monkeypatch.setattr(_dashboard, "STREAM_MAX", 1.5)
    release = threading.Event()
    async with dashboard() as (offload, client):
        for number in range(30):
            await offload.submit(answer, "x" * 100 + str(number))
        await offload.join()
        waiting = await offload.submit(release.wait, 10)
        found: list[httpx.Response] = []

        async def read() -> None:
            found.append(await client.get("/offload/events"))

        async with anyio.create_task_group() as group:
            group.start_soon(read)
            await anyio.sleep(0.7)  # after the first snapshot
            release.set()
            late = await offload.submit(answer, "late")
    text = found[0].text
    [first] = re.findall(r"event: snapshot\ndata: (.*)\n\n", text)
    patches = [json.loads(p) for p in re.findall(r"event: patch\ndata: (.*)\n\n", text)]
    assert len(json.loads(first)["tasks"]) == 31 and patches
    rows = [task for patch in patches for task in patch.get("tasks", [])]
    # Only the two tasks that changed travel again, never the 30 that had ended.
    assert {task["id"] for task in rows} == {waiting.id, late.id}
    orders = [patch["order"] for patch in patches if "order" in patch]
    assert orders[-1][:2] == [late.id, waiting.id]  # the newest first
    assert max(len(json.dumps(patch)) for patch in patches) < len(first) / 3
    assert all("now" in patch for patch in patches)


def test_a_patch_rebuilds_the_snapshot() -> None:
    from fastapi_offload.web.dashboard.patch import diff

    def row(task_id: str, state: str, live: bool = False) -> dict[str, Any]:
        return {"id": task_id, "state": state, "live": live, "duration": 1.0}

    old: dict[str, Any] = {"now": 1.0, "accepting": True, "lanes": [1]}
    old["tasks"] = [row("b", "running", True), row("a", "succeeded")]
    new: dict[str, Any] = {"now": 2.0, "accepting": False, "lanes": [1]}
    new["tasks"] = [row("c", "pending", True), row("b", "succeeded")]
    patch = diff(old, new)
    assert patch == {
        "set": {"accepting": False},
        "tasks": new["tasks"],
        "order": ["c", "b"],
        "removed": ["a"],
        "now": 2.0,
    }
    # Nothing but the clock and a live task's duration: the clock only.
    moved = {**new, "now": 3.0, "tasks": [{**new["tasks"][0], "duration": 2.0}, new["tasks"][1]]}
    assert diff(new, moved) == {"now": 3.0}
    ended = {**new, "tasks": [row("b", "succeeded")]}
    assert diff(ended, {**ended, "now": 9.0}) is None  # nothing live, nothing to say


def test_a_dashboard_without_dependencies_or_public_is_refused() -> None:
    # Issue 15, finding 4: it served every task's id, error and result to anyone.
    offload = Offload()
    with pytest.raises(ConfigError) as refused:
        offload.dashboard_router()
    assert "dependencies=[Depends(require_admin)]" in str(refused.value)
    assert "public=True" in str(refused.value)
    with pytest.raises(ConfigError, match="cancel tasks"):
        offload.dashboard_router(cancel=True)
    with pytest.raises(ConfigError, match="max_streams=0"):
        offload.dashboard_router(public=True, max_streams=0)
    offload.dashboard_router(public=True)
    offload.dashboard_router(dependencies=[Depends(answer)])


@pytest.mark.server
def test_open_streams_are_capped_with_a_503(tmp_path: Path) -> None:
    # Issue 15, finding 7: 1,000 open pages slowed /health to about a second.
    with (
        run_server("tests.apps.dashboard_app:app", tmp_path / "server.log") as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        with client.stream("GET", "/few/events") as one, client.stream("GET", "/few/events") as two:
            assert (one.status_code, two.status_code) == (200, 200)
            refused = client.get("/few/events")
            other = client.get("/ops/snapshot")  # the page's other routes still answer
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "max_streams=2" in refused.json()["detail"] and other.status_code == 200
        deadline = time.monotonic() + 10  # the server notices the two have left
        while True:
            with client.stream("GET", "/few/events") as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the closed streams' slots were not freed"
            time.sleep(0.1)


@pytest.mark.anyio
async def test_the_cancel_route_exists_only_when_enabled() -> None:
    async def wait_forever() -> None:
        await anyio.sleep(60)

    async with dashboard() as (offload, client):
        task = await offload.submit(wait_forever)
        assert (await client.delete(f"/offload/tasks/{task.id}")).status_code == 404
        await offload.cancel(task.id)
    async with dashboard(cancel=True) as (offload, client):
        task = await offload.submit(wait_forever)

        async def running() -> bool:
            return bool(by_name(await snapshot(client))["wait_forever"]["state"] == "running")

        await until(running)
        assert (await snapshot(client))["cancel"] is True
        cancelled = await client.delete(f"/offload/tasks/{task.id}")
        await offload.join()
        again = await client.delete(f"/offload/tasks/{task.id}")
        unknown = await client.delete(f"/offload/tasks/{'0' * 32}")
        found = by_name(await snapshot(client))["wait_forever"]
    assert (cancelled.status_code, again.status_code, unknown.status_code) == (202, 409, 404)
    assert (found["state"], found["error"]) == ("cancelled", "cancelled by request")


@pytest.mark.anyio
async def test_the_docs_example_protects_every_route_with_http_basic() -> None:
    from docs_src import dashboard_app as example

    ops, wrong = httpx.BasicAuth("ops", "change me"), httpx.BasicAuth("ops", "guess")
    paths = ["/offload/", "/offload/assets/dashboard.js", "/offload/snapshot", "/offload/events"]
    async with serve(example.app, example.offload) as client:
        task_id = (await client.post("/albums/1/resize", params={"photos": 2})).json()["task_id"]
        refused = [(await client.get(path)).status_code for path in paths]
        refused.append((await client.delete(f"/offload/tasks/{task_id}")).status_code)
        guessed = await client.get("/offload/snapshot", auth=wrong)
        await example.offload.join()
        page = await client.get("/offload/", auth=ops)
        found = (await client.get("/offload/snapshot", auth=ops)).json()
    assert refused == [401] * 5 and guessed.status_code == 401
    assert guessed.headers["www-authenticate"] == "Basic"
    assert page.status_code == 200
    [task] = found["tasks"]
    assert (task["state"], task["progress_message"]) == ("succeeded", "2 of 2 photos")
    assert found["cancel"] is True


# -- in a real browser -----------------------------------------------------------------


WIRING = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


class DevTools:
    """Headless Chromium driven over `--remote-debugging-pipe` (the DevTools protocol:
    NUL-terminated JSON, commands on the browser's fd 3, answers and events on fd 4).
    Unlike `--dump-dom`, the page keeps running while the test watches it."""

    def __init__(self, profile: Path, size: str = "1280,900") -> None:
        browser = chromium()  # skips (or fails, in CI) when there is none
        commands, self._to_browser = os.pipe()
        self._from_browser, answers = os.pipe()
        # Above 10: moving one end to fd 3 or 4 must not overwrite the other.
        commands, answers = (_moved_up(fd) for fd in (commands, answers))
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        flags += ["--remote-debugging-pipe", f"--user-data-dir={profile}"]
        flags += [f"--window-size={size}", "--hide-scrollbars", "about:blank"]
        # A small exec wrapper puts the pipes where Chromium expects them (dash, the
        # usual /bin/sh, takes one-digit descriptors only in its redirections).
        self.process = subprocess.Popen(
            [sys.executable, "-c", WIRING, str(commands), str(answers), browser, *flags],
            pass_fds=(commands, answers),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands)
        os.close(answers)
        self.events: list[dict[str, Any]] = []
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next = 0
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.getTargets")["targetInfos"]
        page = next(t["targetId"] for t in target if t["type"] == "page")
        attached = self.send("Target.attachToTarget", targetId=page, flatten=True)
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=True)

    def _read(self) -> None:
        buffer = b""
        with open(self._from_browser, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *messages, buffer = (buffer + chunk).split(b"\0")
                for message in messages:
                    found = json.loads(message)
                    (self._answers.put if "id" in found else self.events.append)(found)

    def send(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._answers.get(timeout=30)
            if answer["id"] == self._next:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]  # type: ignore[no-any-return]  # protocol JSON

    def evaluate(self, expression: str) -> Any:
        found = self.send("Runtime.evaluate", session=True, expression=expression)
        return found["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while (value := self.evaluate(expression)) in (None, False, ""):
            assert time.monotonic() < deadline, f"not true within {timeout} s: {expression}"
            time.sleep(0.05)
        return value

    def problems(self) -> list[str]:
        """Uncaught exceptions, console.error calls and errors the browser logged
        (a failed load, a Content-Security-Policy violation)."""
        found = []
        for event in list(self.events):
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif event.get("method") == "Runtime.consoleAPICalled" and params["type"] in (
                "error",
                "assert",
            ):
                found.append(json.dumps(params["args"])[:500])
            elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, queue.Empty):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)


def _moved_up(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


@contextmanager
def devtools(profile: Path, size: str = "1280,900") -> Iterator[DevTools]:
    browser = DevTools(profile, size)
    try:
        yield browser
    finally:
        browser.close()


ROW = "[...document.querySelectorAll('#tasks tbody tr')]"
STATES = f"{ROW}.map(r => r.querySelector('.name').textContent + ':' + r.querySelector('.state').textContent).join(',')"  # noqa: E501


@pytest.mark.server
def test_the_page_shows_a_task_appear_and_finish_without_a_reload(tmp_path: Path) -> None:
    with (
        run_server("tests.apps.dashboard_app:app", tmp_path / "server.log") as server,
        devtools(tmp_path / "profile") as browser,
    ):
        # The task is started only once the page has opened its event stream.
        assert httpx.post(f"{server.url}/when-watched", params={"photos": 6}).status_code == 202
        browser.send("Page.navigate", session=True, url=f"{server.url}/offload/")
        browser.wait_for("document.querySelectorAll('#lanes .lane').length === 3")
        first = browser.evaluate(STATES)
        browser.evaluate("window.loadedOnce = true")  # gone if the page reloaded
        running = browser.wait_for(
            f"{ROW}.find(r => r.textContent.includes('resize_album') && "
            "r.querySelector('progress:not([hidden])'))?.textContent"
        )
        browser.wait_for(f"{STATES}.includes('resize_album:succeeded')", timeout=30)
        message = browser.evaluate(f"{ROW}[0].querySelector('.message').textContent")
        thread_done = browser.evaluate(
            "[...document.querySelectorAll('#lanes .lane')][1].querySelector('dd.succeeded')"
            ".textContent"
        )
        still = browser.evaluate("window.loadedOnce === true")
        live = browser.evaluate("document.getElementById('connection').textContent")
        # A memory store: the page says plainly what it shows (issue 19).
        scope = browser.evaluate("document.getElementById('scope').textContent")
        processes = browser.evaluate("document.getElementById('processes-card').hidden")
        page_error = browser.evaluate("document.getElementById('page-error').textContent")
        problems = browser.problems()
        navigations = [e for e in browser.events if e.get("method") == "Page.frameNavigated"]
        seen = httpx.get(f"{server.url}/seen").json()
    assert first == ""  # no task when the page loaded
    assert "running" in running and "of 6 photos" in running
    assert (message, thread_done, live) == ("100% · 6 of 6 photos", "1", "live")
    assert scope.startswith(f"this process only ({socket.gethostname()}:") and processes is True
    assert still is True and len(navigations) == 1
    assert [path for path, _ in seen].count("/offload/") == 1
    assert (page_error, problems) == ("", [])


@pytest.mark.server
def test_the_page_escapes_what_tasks_report(tmp_path: Path) -> None:
    with (
        run_server("tests.apps.dashboard_app:app", tmp_path / "server.log") as server,
        devtools(tmp_path / "profile") as browser,
    ):
        httpx.post(f"{server.url}/hostile")
        browser.send("Page.navigate", session=True, url=f"{server.url}/offload/")
        browser.wait_for(f"{STATES}.includes('import_contacts:failed')")
        summary = browser.evaluate("document.querySelector('#tasks summary').textContent")
        message = browser.evaluate("document.querySelector('#tasks .message').textContent")
        count = browser.evaluate("document.querySelectorAll('main b, main [src]').length")
        problems = browser.problems()
        dialogs = [e for e in browser.events if e.get("method") == "Page.javascriptDialogOpening"]
    assert summary.startswith("ValueError(\"<script>alert('<img src=x")
    assert message == "30% · <b>bold</b> <img src=x onerror=alert(1)>"
    assert (count, dialogs, problems) == (0, [], [])


@pytest.mark.server
def test_the_cancel_button_cancels_a_running_task(tmp_path: Path) -> None:
    with (
        run_server("tests.apps.dashboard_app:app", tmp_path / "server.log") as server,
        devtools(tmp_path / "profile") as browser,
    ):
        httpx.post(f"{server.url}/payment")
        browser.send("Page.navigate", session=True, url=f"{server.url}/offload/")
        browser.wait_for(f"{STATES} === 'wait_for_payment:running'")
        browser.evaluate("document.querySelector('#tasks button').click()")
        browser.wait_for(f"{STATES} === 'wait_for_payment:cancelled'")
        buttons = browser.evaluate("document.querySelectorAll('#tasks button').length")
        reason = browser.evaluate("document.querySelector('#tasks summary').textContent")
        problems = browser.problems()
    assert (buttons, reason, problems) == (0, "cancelled by request", [])


PROCESS_ROWS = "[...document.querySelectorAll('#processes tbody tr')]"
# Each task row as [id, state, process label, one line of its result].
TASK_ROWS = (
    f"JSON.stringify({ROW}.map(r => [r.dataset.id, r.querySelector('.state').textContent, "
    "r.querySelector('.process').textContent.replace(' · ', ''), "
    "r.querySelector('.result summary')?.textContent ?? null]))"
)


def post_until_both_workers(url: str, params: dict[str, Any]) -> dict[int, list[str]]:
    """Tasks posted to `/from-a-worker` until both processes of `--workers 2` took some,
    by pid. The kernel hands a connection to whichever worker accepts first, so one may
    take a whole burst: post in rounds, a new connection each."""

    def post(_: int) -> dict[str, Any]:
        with httpx.Client(base_url=url, timeout=10) as client:
            response = client.post("/from-a-worker", params=params)
            assert response.status_code == 202, response.text
            return response.json()  # type: ignore[no-any-return]  # JSON of a dict

    by_pid: dict[int, list[str]] = {}
    for _ in range(25):
        with ThreadPoolExecutor(4) as pool:
            for found in pool.map(post, range(4)):
                by_pid.setdefault(found["pid"], []).append(found["id"])
        if len(by_pid) == 2:
            return by_pid
    raise AssertionError(f"one worker took every request: {by_pid}")


def workers_page(scratch: Path, shot: Path | None = None) -> dict[str, Any]:
    """A real `uvicorn --workers 2` sharing a SQLite store, tasks in both workers, and the
    page in headless Chromium: what it shows (and, given `shot`, its picture)."""
    # A 3 s lease: each process publishes its figures every second.
    env = {"OFFLOAD_STORE": f"sqlite:///{scratch / 'tasks.db'}", "OFFLOAD_STORE_LEASE": "3"}
    with (
        run_server(
            "tests.apps.dashboard_app:app", scratch / "server.log", env, args=("--workers", "2")
        ) as server,
        devtools(scratch / "profile") as browser,
    ):
        quick = post_until_both_workers(server.url, {"photos": 2, "pause": 0.05})
        slow = post_until_both_workers(server.url, {"photos": 8, "pause": 0.6})
        labels = {f"{socket.gethostname()}:{pid}" for pid in quick}
        size = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        browser.send("Emulation.setDeviceMetricsOverride", session=True, **size)
        browser.send("Page.navigate", session=True, url=f"{server.url}/offload/")
        browser.wait_for(f"{PROCESS_ROWS}.length === 2")
        # Both processes' thread lanes busy, as each published it with its lease renewal.
        busy = browser.wait_for(
            f"{PROCESS_ROWS}.every(r => /^[12] \\/ 2/.test(r.cells[3].textContent)) && "
            f"JSON.stringify({PROCESS_ROWS}.map(r => [r.dataset.process, r.cells[3].textContent]))"
        )
        if shot is not None:
            browser.wait_for(
                f"{ROW}.filter(r => r.querySelector('.state').textContent === 'running' && "
                "r.querySelector('progress').value >= 0.3).length >= 2"
            )
            picture = browser.send("Page.captureScreenshot", session=True, format="png")
            shot.write_bytes(base64.b64decode(picture["data"]))
        wanted = {task_id for ids in (*quick.values(), *slow.values()) for task_id in ids}
        rows = json.loads(
            browser.wait_for(
                f"(rows => {json.dumps(sorted(wanted))}.every(id => rows.some(r => r[0] === id "
                f"&& r[1] === 'succeeded')) && JSON.stringify(rows))(JSON.parse({TASK_ROWS}))",
                timeout=60,
            )
        )
        result = "document.querySelector('#tasks .result details')"
        line = browser.evaluate(f"{result}.querySelector('summary').getClientRects().length")
        height = browser.evaluate(f"{result}.getBoundingClientRect().height")
        browser.evaluate(f"{result}.querySelector('summary').click()")
        opened = browser.evaluate(f"{result}.open && {result}.querySelector('pre').textContent")
        return {
            "labels": labels,
            "by_pid": {**quick, **{pid: quick[pid] + slow[pid] for pid in slow}},
            "processes": json.loads(busy),
            "rows": rows,
            "scope": browser.evaluate("document.getElementById('scope').textContent"),
            "result": (line, height, opened),
            "problems": browser.problems(),
        }


@pytest.mark.server
def test_with_workers_and_a_shared_store_the_page_shows_every_process(tmp_path: Path) -> None:
    # Issue 19: under `uvicorn --workers 2` each reload showed one process's lanes and tasks.
    seen = workers_page(tmp_path)
    labels, rows = seen["labels"], seen["rows"]
    assert {label for label, _ in seen["processes"]} == labels  # both, labelled host:pid
    assert all(re.match(r"[12] / 2", threads) for _, threads in seen["processes"])
    by_id = {task_id: (state, process) for task_id, state, process, _ in rows}
    for pid, ids in seen["by_pid"].items():  # every task of each worker, labelled by it
        for task_id in ids:
            assert by_id[task_id] == ("succeeded", f"{socket.gethostname()}:{pid}"), rows
    assert seen["scope"].startswith("all processes (2) · this page: ")
    # A kept result is one line, cut; a click shows the whole kept text.
    line, height, opened = seen["result"]
    assert line == 1 and height < 30 and '"sizes":[{"photo":"album-' in opened
    assert seen["problems"] == []


SCHEDULE_CELLS = "[...document.querySelectorAll('#schedules tbody tr td')].map(c => c.textContent)"


@pytest.mark.server
def test_the_page_lists_the_periodic_tasks(tmp_path: Path) -> None:
    env = {"OFFLOAD_TEST_TICKS": str(tmp_path / "ticks.txt"), "OFFLOAD_TEST_EVERY": "0.5"}
    with (
        run_server("tests.apps.periodic_app:app", tmp_path / "server.log", env) as server,
        devtools(tmp_path / "profile") as browser,
    ):
        browser.send("Page.navigate", session=True, url=f"{server.url}/offload/")
        browser.wait_for("document.querySelector('#schedules .state')?.textContent")
        first = browser.evaluate(f"{SCHEDULE_CELLS}.join('|')")
        browser.wait_for(f"{SCHEDULE_CELLS}.join('|') !== {json.dumps(first)}")  # live
        cells = browser.evaluate(f"{SCHEDULE_CELLS}.join('|')").split("|")
        hidden = browser.evaluate("document.getElementById('schedules-card').hidden")
        count = browser.evaluate("document.getElementById('schedule-count').textContent")
        [info] = httpx.get(f"{server.url}/schedules").json()
        problems = browser.problems()
    task, schedule, last, state, upcoming = cells
    assert (hidden, count) == (False, "1")
    assert (task, schedule) == ("append_ticktests.apps.periodic_app", "every 0.5 s")
    assert re.fullmatch(r"\d+s ago[0-9a-f]{8}", last), last  # when, and the run's id
    assert info["last_task_id"] and state in ("succeeded", "running", "pending")
    assert upcoming in ("now", "in 1s"), upcoming
    assert problems == []


def take_screenshot(path: Path, scratch: Path, scheme: str = "light", height: int = 900) -> None:
    """The docs' picture: the demo app's tasks in every state, at 1280 x 900."""
    with (
        run_server("tests.apps.dashboard_app:app", scratch / "server.log") as server,
        devtools(scratch / "profile") as browser,
    ):
        waiting = httpx.post(f"{server.url}/demo").json()["cancel"]
        assert httpx.delete(f"{server.url}/ops/tasks/{waiting}").status_code == 202
        feature = {"name": "prefers-color-scheme", "value": scheme}
        browser.send("Emulation.setEmulatedMedia", session=True, features=[feature])
        size = {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False}
        browser.send("Emulation.setDeviceMetricsOverride", session=True, **size)
        browser.send("Page.navigate", session=True, url=f"{server.url}/ops/")
        browser.wait_for("document.querySelectorAll('.items li').length === 3")  # 3 reports
        browser.wait_for(
            f"{ROW}.some(r => r.textContent.includes('holidays') && "
            "r.querySelector('progress').value >= 0.4)"
        )
        shot = browser.send("Page.captureScreenshot", session=True, format="png")
        assert browser.problems() == []
    path.write_bytes(base64.b64decode(shot["data"]))


if __name__ == "__main__":  # python -m tests.web.test_dashboard [light|dark|workers]: docs/img/
    import tempfile

    scheme = sys.argv[1] if len(sys.argv) > 1 else "light"
    name = "dashboard.png" if scheme == "light" else f"dashboard-{scheme}.png"
    images = ROOT / "docs" / "img"
    with tempfile.TemporaryDirectory() as scratch:
        if scheme == "workers":  # two uvicorn workers sharing a SQLite store
            workers_page(Path(scratch), images / name)
        else:
            take_screenshot(images / name, Path(scratch), scheme)
