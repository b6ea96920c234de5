"""`options(after=...)`: order where it matters; `BackgroundTasks` ran tasks in sequence."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from fastapi import FastAPI

from fastapi_offload import NotOffloadable, Offload, OffloadTasks, TaskState
from fastapi_offload.testing import RecordingBackend

from ..apps import jobs
from ..helpers import lines, serve

pytestmark = pytest.mark.anyio


def broken(path: str) -> None:
    jobs.write(path, "broken")
    raise RuntimeError("it broke")


async def test_a_task_after_another_starts_when_it_succeeded(tmp_path: Path) -> None:
    out = str(tmp_path / "out.txt")
    app = FastAPI()  # the default runtime; the same with a lifespan (below)

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        # FastAPI's background_tasks tutorial relies on its two writes' order.
        first = tasks.add_task(jobs.sleep_then_write, 0.2, out)  # thread lane, slower
        tasks.options(after=first).add_task(jobs.async_write, out, "second")  # loop lane

    async with serve(app) as client:
        assert (await client.post("/")).status_code == 200
    assert [line.split()[0] for line in lines(out)] == ["finished", "second"]


async def test_a_failed_or_cancelled_predecessor_cancels_what_follows(tmp_path: Path) -> None:
    out = str(tmp_path / "out.txt")
    async with Offload() as offload:
        failing = await offload.submit(broken, out)
        after_failure = await offload.options(after=failing).submit(jobs.write, out, "no")
        slow = await offload.submit(jobs.async_sleep, 30)
        after_both = await offload.options(after=[slow, failing.id]).submit(jobs.nap, 0)
        after_unknown = await offload.options(after="no-such-id").submit(jobs.nap, 0)
        assert await offload.cancel(slow.id)
        with anyio.fail_after(5):
            await offload.join()
        ends = [await offload.status(h.id) for h in (after_failure, after_both, after_unknown)]
    assert {info.state for info in ends} == {TaskState.CANCELLED}
    reason = "not run: it runs after task {}, which {}"
    assert ends[0].error == reason.format(failing.id, "ended failed")
    assert ends[1].error == reason.format(slow.id, "ended cancelled")  # the first it waited for
    assert ends[2].error == reason.format("no-such-id", "is unknown")
    assert lines(out) and all(line.startswith("broken") for line in lines(out))


async def test_a_waiting_task_can_be_cancelled_and_holds_no_lane_slot(tmp_path: Path) -> None:
    out = str(tmp_path / "out.txt")
    async with Offload(thread_workers=1) as offload:
        slow = await offload.submit(jobs.async_sleep, 0.5)
        waiting = await offload.options(after=slow).submit(jobs.write, out, "waited")
        meanwhile = await offload.submit(jobs.write, out, "meanwhile")  # the one thread is free
        with anyio.fail_after(5):
            while not lines(out):  # noqa: ASYNC110 - written by a worker thread
                await anyio.sleep(0.01)
        assert (await offload.status(waiting.id)).state is TaskState.PENDING
        assert await offload.cancel(waiting.id)
        with anyio.fail_after(5):
            await offload.join()
        assert (await offload.status(waiting.id)).state is TaskState.CANCELLED
        assert (await offload.status(meanwhile.id)).state is TaskState.SUCCEEDED
    assert [line.split()[0] for line in lines(out)] == ["meanwhile"]


async def test_it_waits_for_a_task_of_another_process_through_the_store(tmp_path: Path) -> None:
    store, out = f"sqlite:///{tmp_path / 'o.db'}", str(tmp_path / "out.txt")
    async with Offload(store=store) as one, Offload(store=store) as other:
        first = await one.submit(jobs.sleep_then_write, 0.5, out)
        second = await other.options(after=first).submit(jobs.write, out, "second")
        with anyio.fail_after(10):
            await one.join()
            await other.join()
        assert (await other.status(second.id)).state is TaskState.SUCCEEDED
    assert [line.split()[0] for line in lines(out)] == ["finished", "second"]


async def test_after_is_for_local_lanes() -> None:
    async with Offload(backend=RecordingBackend()) as offload:
        with pytest.raises(NotOffloadable, match="after= orders tasks of the local lanes"):
            await offload.options(after="x").submit(jobs.write, "/dev/null", "x")
    with pytest.raises(Exception, match="give the handle add_task returned"):
        Offload().options(after=42)  # type: ignore[arg-type]
