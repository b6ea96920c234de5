"""Kept results (`_results.py`): `keep_result` (app-wide and per task), on the loop, thread and
process lanes, and a large result refused without encoding it whole or blocking the API."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI

from fastapi_offload import ConfigError, Offload, TaskState, task
from fastapi_offload._decorators import LaneName
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.memory import MemoryStore

from .apps import progress_jobs as jobs
from .conftest import Server, StartServer
from .helpers import serve

pytestmark = pytest.mark.anyio

LANES = ["loop", "thread", "process"]


def answer_for(lane: str) -> Any:
    return jobs.answer_async if lane == "loop" else jobs.answer


@pytest.mark.parametrize("lane", LANES)
async def test_a_kept_result_is_the_return_value_as_json(lane: LaneName) -> None:
    value = {
        "name": "thumb",
        "sizes": (128, 256),
        "ratio": 0.5,
        "ok": True,
        "note": "\u00e9t\u00e9",
    }
    async with Offload(keep_result=True) as offload:
        handle = await offload.options(lane=lane).submit(answer_for(lane), value)
        await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.SUCCEEDED
    assert info.result == {
        "name": "thumb",
        "sizes": [128, 256],
        "ratio": 0.5,
        "ok": True,
        "note": "\u00e9t\u00e9",
    }
    assert info.error is None


@pytest.mark.parametrize("lane", LANES)
async def test_results_are_not_kept_unless_asked(lane: LaneName) -> None:
    async with Offload() as offload:
        plain = await offload.options(lane=lane).submit(answer_for(lane), 42)
        asked = await offload.options(lane=lane, keep_result=True).submit(answer_for(lane), 42)
        await offload.join()
        assert (await offload.status(plain.id)).result is None
        assert (await offload.status(asked.id)).result == 42


async def test_a_declared_keep_result_applies_and_an_option_overrides_it() -> None:
    kept = task(keep_result=True)(jobs.answer)
    try:
        async with Offload() as offload:
            declared = await offload.submit(kept, "yes")
            overridden = await offload.options(keep_result=False).submit(kept, "no")
            await offload.join()
            assert (await offload.status(declared.id)).result == "yes"
            assert (await offload.status(overridden.id)).result is None
    finally:
        del jobs.answer.__fastapi_offload__  # type: ignore[attr-defined]


@pytest.mark.parametrize("lane", ["thread", "process"])
@pytest.mark.parametrize(
    ("func", "why"),
    [
        (jobs.not_json, "set is not JSON-serializable"),
        (jobs.nan, "float is not JSON-serializable (Out of range float values"),
        (jobs.unpicklable, "generator is not JSON-serializable"),
    ],
    ids=["set", "nan", "generator"],
)
async def test_a_result_that_is_not_json_leaves_the_task_succeeded_with_the_reason(
    lane: LaneName, func: Any, why: str
) -> None:
    async with Offload(keep_result=True) as offload:
        handle = await offload.options(lane=lane).submit(func)
        await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.SUCCEEDED
    assert info.result is None
    assert info.error is not None and info.error.startswith("result not kept: ")
    assert why in info.error
    assert "return plain JSON data" in info.error


@pytest.mark.parametrize("lane", LANES)
async def test_a_result_over_the_size_limit_is_not_kept_and_its_size_is_reported(
    lane: LaneName,
) -> None:
    func = jobs.answer_async if lane == "loop" else jobs.answer
    async with Offload(keep_result=True, result_max_bytes=1000) as offload:
        small = await offload.options(lane=lane).submit(func, "x" * 900)
        big = await offload.options(lane=lane).submit(func, "x" * 5000)
        await offload.join()
        assert (await offload.status(small.id)).result == "x" * 900
        info = await offload.status(big.id)
    assert info.state is TaskState.SUCCEEDED and info.result is None
    assert info.error is not None
    assert "too large (more than 1.0 kB of JSON, over result_max_bytes=1000)" in info.error
    assert "OFFLOAD_RESULT_MAX_BYTES" in info.error


def test_result_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="result_max_bytes=0 must be a whole number, 1 or more"):
        Offload(result_max_bytes=0)
    with pytest.raises(ConfigError, match="keep_result='yes' must be True or False"):
        Offload(keep_result="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="keep_result=1 must be True or False"):
        Offload().options(keep_result=1)  # type: ignore[arg-type]


def test_keep_result_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_KEEP_RESULT", "true")
    monkeypatch.setenv("OFFLOAD_RESULT_MAX_BYTES", "2048")
    config = Offload().config
    assert (config.keep_result, config.result_max_bytes) == (True, 2048)


def finished(index: int, result: str | None) -> TaskRecord:
    record = TaskRecord(
        id=f"{index:032x}", name="t", lane="thread", func=None, args=(), kwargs={},
        timeout=None, retries=0, retry_delay=1.0,
    )  # fmt: skip
    record.state, record.result = TaskState.SUCCEEDED, result
    return record


def test_the_memory_store_bounds_results_over_100k_tasks() -> None:
    # 100k results of ~1 kB each: 100 MB if all were kept; the budget holds 2 MB.
    store = MemoryStore(capacity=200_000, result_budget=2_000_000)
    text = '"' + "r" * 1000 + '"'
    for index in range(100_000):
        store.put(finished(index, text))
    assert len(store) == 100_000  # every status is kept (capacity)
    assert store.result_bytes <= 2_000_000
    newest, oldest = store.get_now(f"{99_999:032x}"), store.get_now(f"{0:032x}")
    assert newest is not None and newest.result == "r" * 1000
    assert oldest is not None and oldest.result is None
    assert oldest.state is TaskState.SUCCEEDED
    assert oldest.error is not None and oldest.error.startswith("result dropped: the memory store")


def test_the_memory_store_forgets_the_result_with_the_status() -> None:
    store = MemoryStore(capacity=10)
    for index in range(1000):
        store.put(finished(index, '"abc"'))
    assert len(store) == 10
    assert store.result_bytes == 10 * len('"abc"')


async def test_the_status_router_returns_the_result() -> None:
    offload = Offload(keep_result=True)
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router())
    async with serve(app, offload) as client:
        handle = await offload.submit(jobs.answer, [1, "two", {"three": 3}])
        await offload.join()
        body = (await client.get(f"/tasks/{handle.id}")).json()
    assert body["state"] == "succeeded"
    assert body["result"] == [1, "two", {"three": 3}]
    assert body["progress"] is None


# -- large results, bounded (issue 15, finding 5) ----------------------------------------

BOUNDS_APP = "tests.apps.bounds_app:app"


def _sqlite(tmp_path: Path) -> dict[str, str]:
    return {"OFFLOAD_STORE": f"sqlite:///{tmp_path / 'offload.db'}"}


_PEAK = """
import asyncio, json, resource, sys
from fastapi_offload import Offload

def large():
    return [[1] * 1000] * 100_000  # ~200 MB of JSON, ~1 MB in memory

async def main():
    offload = Offload(keep_result=True, result_max_bytes=1_000_000)
    async with offload.lifespan(None):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        handle = await offload.options(lane="thread").submit(large)
        await offload.join()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        info = await offload.status(handle.id)
    print(json.dumps({"growth_kb": after - before, "error": info.error}))

asyncio.run(main())
"""


@pytest.mark.server
def test_a_large_result_is_refused_without_encoding_it_whole(tmp_path: Path) -> None:
    # Was: the whole 200 MB text was made, then compared with the limit.
    script = tmp_path / "peak.py"
    script.write_text(textwrap.dedent(_PEAK))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert "too large" in found["error"]
    assert found["growth_kb"] < 50_000, found  # the text alone is 200,000 kB


@pytest.mark.timing
@pytest.mark.server
def test_health_answers_while_a_large_result_is_refused(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Was: the C encoder held the GIL for seconds in the worker thread, /health froze.
    server = start_server(
        BOUNDS_APP, env={**_sqlite(tmp_path), "OFFLOAD_RESULT_MAX_BYTES": "1000000"}
    )
    with server.client() as client:
        client.get("/health")
        with ThreadPoolExecutor(1) as pool:
            probe = pool.submit(_worst, server, 4.0)
            time.sleep(0.3)
            task_id = client.post("/large-result", params={"rows": 200_000}).json()["id"]
            worst = probe.result()
    body = server.wait_for_state(task_id, {"succeeded", "failed"})
    assert body["state"] == "succeeded" and "too large" in str(body["error"])
    assert worst < 1.0, worst  # was 4-10 s with a 400 MB text


def _worst(server: Server, seconds: float) -> float:
    worst = 0.0
    with server.client(timeout=60) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            assert client.get("/health").status_code == 200
            worst = max(worst, time.perf_counter() - start)
            time.sleep(0.02)
    return worst


async def _large_async() -> list[list[int]]:
    return [[1] * 1000] * 100_000  # ~200 MB of JSON


async def test_a_large_loop_result_is_refused_off_the_loop() -> None:
    # Was: a loop task's result was encoded whole on the loop (7.3 s for this one).
    offload = Offload(keep_result=True, result_max_bytes=1_000_000, loop_block_threshold=0)
    worst = 0.0
    async with offload.lifespan(None):
        done = anyio.Event()

        async def tick() -> None:
            nonlocal worst
            while not done.is_set():
                start = time.perf_counter()
                await anyio.sleep(0.01)
                worst = max(worst, time.perf_counter() - start)

        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            await anyio.sleep(0.05)  # the ticker is measuring
            handle = await offload.submit(_large_async)
            await offload.join()
            done.set()
        info = await offload.status(handle.id)
    assert info is not None and "too large" in str(info.error)
    assert worst < 1.0, worst  # now ~16 ms
