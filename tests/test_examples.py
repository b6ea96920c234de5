"""The examples of the docs (examples/media_fix, compute_status, testing_app), run the way
their pages say: under uvicorn, with their documented commands, and in-process."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT, Server, StartServer


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
def test_compute_status_with_its_documented_commands(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("examples.compute_status.app:app", env={"RESULTS_DIR": str(tmp_path)})
    command = [sys.executable, "-m", "examples.compute_status.client", "20000"]
    result = subprocess.run(
        [*command, "--url", server.url], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "'below': 20000, 'primes': 2262" in result.stdout
    assert (tmp_path / "primes-below-20000.json").is_file()


@pytest.mark.anyio
async def test_compute_status_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.compute_status import app as example
    from examples.compute_status.client import count_primes

    monkeypatch.setattr(example, "RESULTS_DIR", tmp_path)
    transport = httpx.ASGITransport(app=example.app)
    async with example.offload.lifespan(example.app):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/primes/10000")).status_code == 404
            result = await count_primes(client, 10_000, interval=0.02)
            too_small = await client.post("/primes", params={"below": 1})
    assert result["below"] == 10_000 and result["primes"] == 1229
    assert result["worker_pid"] != os.getpid()  # counted in a worker process
    assert too_small.status_code == 422
    assert not [path.name for path in os.scandir(tmp_path) if path.name.endswith(".partial")]


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
