"""The examples of the docs (examples/media_fix, compute_status, testing_app), run the way
their pages say: under uvicorn, with their documented commands, and in-process; the
compute example's page in a real headless Chromium."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import anyio
import httpx
import pytest

from ..conftest import ROOT, Server, StartServer
from .test_docs import chromium


def health_latencies(server: Server, seconds: float) -> list[float]:
    """`GET /health` every 10 ms for `seconds`; each answer's latency, in seconds."""
    found: list[float] = []
    with server.client(timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            assert client.get("/health").status_code == 200
            found.append(time.perf_counter() - start)
            time.sleep(0.01)
    return found


def wait_for_files(folder: Path, pattern: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(list(folder.glob(pattern))) < count:
        assert time.monotonic() < deadline, f"{count} x {pattern} not in {folder} in time"
        time.sleep(0.05)


def make_thumbnails(server: Server, media: Path) -> list[float]:
    with server.client() as client:
        for image_id in range(4):
            response = client.post(f"/images/{image_id}/thumbnail")
            assert response.status_code == 202 and response.json() == {"image_id": image_id}
    latencies = health_latencies(server, 2.0)
    wait_for_files(media, "thumbnail-*-128.pgm", 4)
    return latencies


@pytest.mark.timing
@pytest.mark.server
def test_media_fix_one_word_moves_the_job_off_the_api_process(
    start_server: StartServer, tmp_path: Path
) -> None:
    before_media, after_media = tmp_path / "before", tmp_path / "after"
    before_media.mkdir()
    after_media.mkdir()
    before = start_server("examples.media_fix.before:app", env={"MEDIA_DIR": str(before_media)})
    slow = make_thumbnails(before, before_media)
    before.stop()
    after = start_server("examples.media_fix.after:app", env={"MEDIA_DIR": str(after_media)})
    fast = make_thumbnails(after, after_media)
    thumbnail = (after_media / "thumbnail-3-128.pgm").read_bytes()
    assert thumbnail.startswith(b"P5 128 128 255\n") and len(thumbnail) == 15 + 128 * 128
    # Orders of magnitude, not tight numbers: with the job in a thread of the API
    # process, each request waits for the GIL; in a worker process it does not.
    assert statistics.median(slow) > 5 * statistics.median(fast), (slow, fast)
    assert max(fast) < 0.5


@pytest.mark.server
def test_compute_status_with_its_documented_commands(start_server: StartServer) -> None:
    server = start_server("examples.compute_status.app:app")
    command = [sys.executable, "-m", "examples.compute_status.client", "20000"]
    result = subprocess.run(
        [*command, "--url", server.url], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "'below': 20000, 'primes': 2262" in result.stdout
    # The progress line, redrawn in place on stderr (after a "\r"): last, the full bar.
    drawn = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    assert drawn[-1] == f"[{'#' * 30}] 100% 19,998 of 19,998 numbers checked", result.stderr


@pytest.mark.anyio
async def test_compute_status_in_process() -> None:
    from examples.compute_status import app as example
    from examples.compute_status.client import count_primes, progress_line

    seen: list[dict[str, object]] = []
    transport = httpx.ASGITransport(app=example.app)
    async with example.offload.lifespan(example.app):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            page = await client.get("/")
            result = await count_primes(client, 10_000, interval=0.02, on_status=seen.append)
            too_small = await client.post("/primes", params={"below": 1})
    assert page.headers["content-type"].startswith("text/html")
    assert "new EventSource(`/tasks/${id}/events`)" in page.text
    assert result["below"] == 10_000 and result["primes"] == 1229
    assert result["worker_pid"] != os.getpid()  # counted in a worker process
    assert (seen[-1]["state"], seen[-1]["result"]) == ("succeeded", result)
    assert progress_line(seen[-1], width=4) == "[####] 100% 9,998 of 9,998 numbers checked"
    assert too_small.status_code == 422


@pytest.mark.anyio
async def test_compute_status_cancels_a_count_over_http() -> None:
    from examples.compute_status import app as example

    transport = httpx.ASGITransport(app=example.app)
    async with example.offload.lifespan(example.app):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            started = (await client.post("/primes", params={"below": 50_000_000})).json()
            with anyio.fail_after(60):
                while True:  # until it runs and has reported progress
                    if (await client.get(started["status_url"])).json()["progress"] is not None:
                        break
                    await anyio.sleep(0.05)
                cancelled = await client.delete(started["status_url"])
                await example.offload.join()
            again = await client.delete(started["status_url"])
            unknown = await client.delete(f"/tasks/{'0' * 32}")
            status = (await client.get(started["status_url"])).json()
    assert (cancelled.status_code, again.status_code, unknown.status_code) == (202, 409, 404)
    assert (status["state"], status["error"], status["result"]) == (
        "cancelled",
        "cancelled by request",
        None,
    )
    assert 0 < status["progress"] < 1


# -- the page, in a real browser --------------------------------------------------------

CONSOLE = re.compile(r":CONSOLE\b.*")  # how Chromium's stderr log shows a console message


def run_chromium(url: str, profile: Path) -> tuple[str, list[str]]:
    """Load `url` in headless Chromium until its network is idle; the DOM as it then is,
    and what the page wrote to its console (errors, failed requests, console.*)."""
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        # Virtual time stands still while a request is open (the event stream, for as
        # long as the count runs), then runs out at once: the dump waits for the end
        # however slow the machine, without a fixed sleep.
        "--virtual-time-budget=120000", "--dump-dom", url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"chromium failed on {url}:\n{done.stderr[-3000:]}"
    return done.stdout, CONSOLE.findall(done.stderr)


class _Dom(HTMLParser):
    """The attributes and the text of the page's elements that have an id."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.text: dict[str, str] = {}
        self._open: str | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self._open = str(found["id"])
            self.attrs[self._open], self.text[self._open] = found, ""

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.text[self._open] += data


def test_compute_status_browser_tests_see_console_messages(tmp_path: Path) -> None:
    # The browser tests assert that no console line appears: prove such lines are caught.
    page = tmp_path / "noisy.html"
    page.write_text("<script>console.error('probe'); missing();</script>")
    _, console = run_chromium(page.as_uri(), tmp_path / "profile")
    assert any('"probe"' in line for line in console), console
    assert any("Uncaught ReferenceError" in line for line in console), console


@pytest.mark.server
def test_compute_status_page_shows_live_progress_in_chromium(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("examples.compute_status.app:app")
    # The page starts the count itself, from the query, then follows its event stream.
    dom, console = run_chromium(f"{server.url}/?below=1000000&auto=1", tmp_path / "profile")
    page = _Dom(dom)
    assert page.attrs["app"]["data-state"] == "succeeded", dom
    assert page.text["result"].startswith("78,498 primes below 1,000,000 ("), dom
    assert "hidden" not in page.attrs["result"]
    assert page.attrs["bar"]["value"] == "1"
    assert page.text["message"] == "999,998 of 999,998 numbers checked"
    # The bar moved: each value it showed, in order, within one page load.
    shown = [float(value) for value in str(page.attrs["app"]["data-progress-seen"]).split()]
    assert len([value for value in shown if 0 < value < 1]) >= 3, shown
    assert shown == sorted(shown) and shown[-1] == 1.0, shown
    assert console == []
    log = server.log()
    assert log.count("GET /?below=1000000&auto=1 ") == 1 and log.count("POST /primes") == 1, log


@pytest.mark.server
def test_compute_status_page_shows_a_cancelled_count_in_chromium(
    start_server: StartServer, tmp_path: Path
) -> None:
    chromium()  # skips here, not in the browser's thread, when there is none
    server = start_server("examples.compute_status.app:app")
    with server.client() as client:
        task_id = client.post("/primes", params={"below": 50_000_000}).json()["task_id"]
        # The link the page puts in the address bar: it follows a count it did not start.
        url = f"{server.url}/?below=50000000&task={task_id}"
        with ThreadPoolExecutor(1) as pool:  # the browser follows while the test cancels
            browser = pool.submit(run_chromium, url, tmp_path / "profile")
            server.wait_for_log(f"GET /tasks/{task_id}/events", timeout=120)
            server.wait_for_state(task_id, {"running"}, timeout=60)
            assert client.delete(f"/tasks/{task_id}").status_code == 202
            dom, console = browser.result(timeout=300)
    page = _Dom(dom)
    assert page.attrs["app"]["data-state"] == "cancelled", dom
    assert page.text["message"] == "cancelled by request"
    assert "hidden" in page.attrs["result"]
    assert float(str(page.attrs["bar"]["value"])) < 1
    assert console == []


def test_testing_app_suite_passes() -> None:
    # The documented command, in a subprocess: the example's conftest.py is its own.
    command = [
        sys.executable,
        "-m",
        "pytest",
        "examples/testing_app",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
