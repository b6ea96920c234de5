"""A test app for the dashboard under a real uvicorn, and the demo behind its screenshot.

`POST /when-watched` starts a task only once a page has opened the dashboard's event
stream, so a browser test sees it appear and finish without a reload; `POST /hostile`
runs a task whose error and progress message are markup; `POST /payment` one that
waits for its cancel button. `POST /demo`
fills the page with tasks in every state (for docs/img/dashboard.png):

    .venv/bin/python -m uvicorn tests.apps.dashboard_app:app --port 8000 &
    curl -X POST localhost:8000/demo  # then open http://localhost:8000/ops/

(`tests/web/test_dashboard.py` has `python -m tests.web.test_dashboard screenshot`, which
does this and takes the picture.) `POST /from-a-worker` starts a task and says which process took
it: under `--workers 2` with `OFFLOAD_STORE=sqlite:///...`, the page shows both
(`python -m tests.web.test_dashboard workers` takes docs/img/dashboard-workers.png).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

import anyio
import anyio.lowlevel
from fastapi import Depends, FastAPI, Request

from fastapi_offload import Offload, OffloadTasks, cpu_bound, io_bound, report_progress

offload = Offload(thread_workers=2, process_workers=1, loop_block_threshold=0.05)
app = FastAPI(lifespan=offload.lifespan)
seen: list[tuple[str, float]] = []  # (path, time) of each dashboard request
_waiting: set[asyncio.Task[Any]] = set()  # a reference keeps a started watcher alive


def record_request(request: Request) -> None:
    seen.append((request.url.path, time.time()))


app.include_router(offload.dashboard_router(cancel=True, dependencies=[Depends(record_request)]))
# The screenshot's: arguments shown.
# public=True: a test server on 127.0.0.1, which nobody else reaches.
app.include_router(
    offload.dashboard_router(prefix="/ops", cancel=True, show_arguments=True, public=True)
)
# Two feeds at most: a third open page gets a 503 (the stream cap's test).
app.include_router(offload.dashboard_router(prefix="/few", public=True, max_streams=2))


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.get("/seen")
async def requests_seen() -> list[tuple[str, float]]:
    return seen


# -- jobs ------------------------------------------------------------------------------


@io_bound
def resize_album(album: str, photos: int, pause: float) -> int:
    for done in range(photos):
        time.sleep(pause)  # stands in for one photo
        report_progress((done + 1) / photos, f"{done + 1} of {photos} photos")
    return photos


@io_bound
def send_invoice(order: int) -> None:
    time.sleep(0.05)
    raise ConnectionError(f"smtp.example.com refused the connection for order {order}")


@io_bound
def sync_inventory(seconds: float) -> None:
    time.sleep(seconds)


def checksum(size: int) -> str:  # undeclared: the CPU advisor finds it CPU-bound
    digest = b""
    for _ in range(size):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def load_prices() -> None:
    time.sleep(0.2)  # a blocking call: a sync HTTP client, a file read


async def refresh_prices() -> None:
    load_prices()  # the mistake the loop-block report points at
    await anyio.lowlevel.checkpoint()


@cpu_bound
def render_video(clip: int) -> None:
    os._exit(1)  # stands in for a segfault or an OOM kill of the worker


# -- starting them ---------------------------------------------------------------------


@app.post("/when-watched", status_code=202)
async def when_watched(photos: int = 5, pause: float = 0.3) -> None:
    # Not an offloaded task itself: the page must find no task at all when it loads.
    watcher = asyncio.get_running_loop().create_task(start_when_watched(photos, pause))
    _waiting.add(watcher)
    watcher.add_done_callback(_waiting.discard)


async def start_when_watched(photos: int, pause: float) -> None:
    while not any(path.endswith("/events") for path, _ in seen):  # noqa: ASYNC110 - a list
        await anyio.sleep(0.05)
    await anyio.sleep(1.0)  # the page has shown its first (empty) snapshot by then
    await offload.submit(resize_album, "holidays", photos, pause)


async def wait_for_payment(order: int) -> None:
    await anyio.sleep(60)  # on the loop lane: a cancel stops it at once


@app.post("/payment", status_code=202)
async def payment(tasks: OffloadTasks) -> None:
    tasks.add_task(wait_for_payment, 1042)


@io_bound
def import_contacts(source: str) -> None:
    report_progress(0.3, "<b>bold</b> <img src=x onerror=alert(1)>")
    raise ValueError(f"<script>alert({source!r})</script> is not a CSV file")


@app.post("/hostile", status_code=202)
async def hostile(tasks: OffloadTasks) -> None:
    tasks.add_task(import_contacts, "<img src=x onerror=alert(2)>")


@io_bound
def export_orders(month: str) -> None:
    time.sleep(600)  # stands in for a long export


@io_bound
def send_newsletter(issue: int) -> None:
    time.sleep(1)


@io_bound
def describe_album(album: str, photos: int, pause: float) -> dict[str, Any]:
    for done in range(photos):
        time.sleep(pause)
        report_progress((done + 1) / photos, f"{done + 1} of {photos} photos")
    # A long result, kept: the page shows one line of it, the rest on a click.
    sizes = [{"photo": f"{album}-{n:03}.jpg", "width": 4032, "height": 3024} for n in range(8)]
    return {"album": album, "photos": photos, "sizes": sizes}


@app.post("/from-a-worker", status_code=202)
async def from_a_worker(tasks: OffloadTasks, photos: int = 4, pause: float = 0.5) -> Any:
    # Under `--workers 2` with a shared store: which worker took the request, so a test
    # can post until both have tasks.
    task = tasks.options(keep_result=True).add_task(
        describe_album, f"album-{os.getpid()}", photos, pause
    )
    return {"pid": os.getpid(), "id": task.id}


@app.post("/demo", status_code=202)
async def demo(tasks: OffloadTasks) -> dict[str, str]:
    tasks.add_task(resize_album, "wedding", 4, 0.01)
    tasks.add_task(send_invoice, 1042)
    tasks.add_task(refresh_prices)
    tasks.add_task(render_video, 7)
    tasks.add_task(checksum, 300_000)
    tasks.add_task(resize_album, "holidays", 40, 0.1)
    tasks.add_task(export_orders, "2025-11")
    # Both threads are busy by then: these two wait (cancel the first for the picture).
    cancel = tasks.add_task(sync_inventory, 600).id
    tasks.add_task(send_newsletter, 48)
    return {"cancel": cancel}
