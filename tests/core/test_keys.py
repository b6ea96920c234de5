"""Idempotency keys through the runtime and the request collector (`core/keys.py`):
`options(key=...)` answers a held key with its task's handle (`existing`) and starts
nothing; another function on the key is a `KeyConflict`; a task never accepted (a full
lane, a failed request) frees its key."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI, HTTPException, Response
from fastapi.testclient import TestClient

from fastapi_offload import (
    ConfigError,
    KeyConflict,
    Offload,
    OffloadTasks,
    QueueFull,
    TaskHandle,
    TaskState,
)
from fastapi_offload.testing import InlineBackend, RecordingBackend

from ..apps import jobs
from ..helpers import lines, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return None if request.param == "memory" else f"sqlite:///{tmp_path / 'offload.db'}"


def receipt_app(offload: Offload, out: Path, *, lifespan: bool = True) -> FastAPI:
    """The documented shape: 202 for a new task, 200 with the same id for a retried POST."""
    app = FastAPI(lifespan=offload.lifespan if lifespan else None)

    @app.post("/orders/{order_id}/receipt", status_code=202)
    async def receipt(order_id: int, tasks: OffloadTasks, response: Response) -> dict[str, Any]:
        handle = tasks.options(key=f"receipt:{order_id}").add_task(jobs.write, str(out), "sent")
        if handle.existing:
            response.status_code = 200
        return {"id": handle.id, "existing": handle.existing}

    @app.post("/orders/{order_id}/fail")
    async def fail_after_adding(order_id: int, tasks: OffloadTasks) -> None:
        tasks.options(key=f"receipt:{order_id}").add_task(jobs.write, str(out), "failed")
        raise HTTPException(409, "the order changed meanwhile")

    @app.post("/orders/{order_id}/sync", status_code=202)
    def in_a_thread(order_id: int, tasks: OffloadTasks) -> dict[str, Any]:
        handle = tasks.options(key=f"receipt:{order_id}").add_task(jobs.write, str(out), "sync")
        return {"id": handle.id, "existing": handle.existing}

    return app


async def test_a_retried_post_answers_200_with_the_id_of_the_task_it_started(
    tmp_path: Path, store: str | None
) -> None:
    out = tmp_path / "out"
    offload = Offload(store=store)
    async with serve(receipt_app(offload, out), offload) as client:
        first = await client.post("/orders/42/receipt")
        again = await client.post("/orders/42/receipt")
        await offload.join()
        after = await client.post("/orders/42/receipt")  # finished, within key_ttl
        other = await client.post("/orders/43/receipt")
        await offload.join()
        assert (first.status_code, first.json()["existing"]) == (202, False)
        assert [r.status_code for r in (again, after, other)] == [200, 200, 202]
        assert again.json() == after.json() == {"id": first.json()["id"], "existing": True}
        assert (await offload.status(first.json()["id"])).state is TaskState.SUCCEEDED
        assert offload.stats().lanes["thread"].succeeded == 2  # one per order, not three
    assert len(lines(out)) == 2


async def test_the_handle_of_a_held_key_is_that_of_its_task_and_nothing_is_admitted() -> None:
    async with Offload() as offload:
        first = await offload.options(key="k").submit(jobs.nap, 0.2)
        admitted = offload.stats().lanes["thread"]
        again = await offload.options(key="k", lane="thread", timeout=5).submit(jobs.nap, 9)
        assert again == TaskHandle(first.id, first.name, first.lane, existing=True)
        assert offload.stats().lanes["thread"] == admitted  # no slot, no count moved
        await offload.join()


async def test_concurrent_requests_in_threads_with_one_key_start_one_task(
    tmp_path: Path, store: str | None
) -> None:
    # A sync endpoint claims in its worker thread (SQLite: on that thread's connection).
    out = tmp_path / "out"
    offload = Offload(store=store)
    async with serve(receipt_app(offload, out), offload) as client:
        answers = await asyncio.gather(*(client.post("/orders/7/sync") for _ in range(20)))
        await offload.join()
    assert [a.status_code for a in answers] == [202] * 20
    bodies = [a.json() for a in answers]
    assert len({body["id"] for body in bodies}) == 1
    assert sorted(body["existing"] for body in bodies) == [False] + [True] * 19
    assert len(lines(out)) == 1


async def test_a_delayed_task_holds_its_key_while_scheduled() -> None:
    async with Offload(key_ttl=3600) as offload:
        first = await offload.options(key="k", delay=30).submit(jobs.nap, 0)
        again = await offload.options(key="k").submit(jobs.nap, 0)
        assert (again.id, again.existing) == (first.id, True)
        assert (await offload.status(first.id)).state is TaskState.SCHEDULED
        assert await offload.cancel(first.id)  # ended: its key is held key_ttl more
        assert (await offload.options(key="k").submit(jobs.nap, 0)).id == first.id


async def test_a_key_held_by_another_function_is_a_key_conflict_naming_both() -> None:
    async with Offload() as offload:
        first = await offload.options(key="order-42").submit(jobs.nap, 0)
        with pytest.raises(KeyConflict) as caught:
            await offload.options(key="order-42").submit(jobs.write, "/dev/null", "x")
        await offload.join()
    error = caught.value
    assert isinstance(error, ConfigError)  # a mistake in how the app forms its keys
    assert str(error) == (
        f"key 'order-42' is held by task {first.id} of tests.apps.jobs.nap, so "
        "tests.apps.jobs.write cannot use it: a key deduplicates one kind of work. Give each "
        "kind of work keys of its own, e.g. prefixed with the job's name: "
        'key=f"write:{...}"'
    )
    assert (error.key, error.holder, error.task_id, error.name) == (
        "order-42", "tests.apps.jobs.nap", first.id, "tests.apps.jobs.write"
    )  # fmt: skip


async def test_a_key_is_free_again_key_ttl_after_its_task_ended(store: str | None) -> None:
    async with Offload(store=store, key_ttl=0.3) as offload:
        first = await offload.options(key="k").submit(jobs.nap, 0)
        await offload.join()
        ended = time.time()
        assert (await offload.options(key="k").submit(jobs.nap, 0)).existing
        await anyio.sleep(max(0.0, ended + 0.4 - time.time()))
        later = await offload.options(key="k").submit(jobs.nap, 0)
        assert (later.existing, later.id != first.id) == (False, True)
        await offload.join()


async def test_a_failed_request_frees_its_key_for_the_retry(
    tmp_path: Path, store: str | None
) -> None:
    out = tmp_path / "out"
    offload = Offload(store=store)
    async with serve(receipt_app(offload, out), offload) as client:
        failed = await client.post("/orders/42/fail")
        retried = await client.post("/orders/42/receipt")  # at once: the key is free
        await offload.join()
    assert failed.status_code == 409
    assert (retried.status_code, retried.json()["existing"]) == (202, False)
    assert [line.split()[0] for line in lines(out)] == ["sent"]  # the failed one never ran


async def test_a_task_refused_by_a_full_lane_frees_its_key() -> None:
    async with Offload(max_pending=1) as offload:
        busy = await offload.submit(jobs.async_sleep, 0.3)  # the loop lane's only slot
        with pytest.raises(QueueFull):
            await offload.options(key="k").submit(jobs.async_sleep, 0)
        await offload.join()
        later = await offload.options(key="k").submit(jobs.async_sleep, 0)
        assert not later.existing and later.id != busy.id  # not a task that never ran
        await offload.join()
        assert (await offload.status(later.id)).state is TaskState.SUCCEEDED


@pytest.mark.parametrize("double", [InlineBackend, RecordingBackend])
async def test_the_test_doubles_see_keys_as_a_real_backend_would(
    double: type[InlineBackend] | type[RecordingBackend],
) -> None:
    backend = double()
    async with Offload(backend=backend) as offload:
        first = await offload.options(key="k").submit(jobs.write, "/dev/null", "x")
        again = await offload.options(key="k").submit(jobs.write, "/dev/null", "x")
    assert (again.id, again.lane, again.existing) == (first.id, backend.name, True)
    assert [call.id for call in backend.calls] == [first.id]  # sent once


def test_keys_hold_on_the_default_runtime_too(tmp_path: Path) -> None:
    # No lifespan: each request waits for its own tasks, in memory; a retry still finds
    # the task its first attempt ran.
    out = tmp_path / "out"
    with TestClient(receipt_app(Offload(), out, lifespan=False)) as client:
        first = client.post("/orders/1/receipt")
        again = client.post("/orders/1/receipt")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"id": first.json()["id"], "existing": True}
    assert len(lines(out)) == 1
