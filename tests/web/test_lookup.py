"""Which runtime serves a request (`web/lookup.py`): no registry shared between apps."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks

from ..apps import jobs
from ..helpers import serve

pytestmark = pytest.mark.anyio


def lane_app(lifespan: Offload | None = None) -> FastAPI:
    app = FastAPI(lifespan=lifespan.lifespan if lifespan else None)

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> str:
        return tasks.add_task(jobs.nap, 0).lane

    return app


async def test_two_apps_on_one_loop_each_use_their_own_runtime() -> None:
    # An app with a lifespan routes by its rules; an app without one, on the same loop,
    # does not pick that runtime up (there was a first-wins registry per loop before).
    offload = Offload(routes={"tests.apps.jobs.nap": "process"})
    with_lifespan, without = lane_app(offload), lane_app()
    async with serve(with_lifespan, offload) as first, serve(without) as second:
        assert (await first.post("/")).json() == "process"
        assert (await second.post("/")).json() == "thread"
        await offload.join()


def test_a_mounted_app_finds_the_runtime_of_the_app_it_is_mounted_in() -> None:
    from fastapi.testclient import TestClient

    offload = Offload(routes={"tests.apps.jobs.nap": "process"})
    parent = FastAPI(lifespan=offload.lifespan)
    parent.mount("/sub", lane_app())
    # The lifespan's state reaches the mounted app's requests, as a server passes it.
    with TestClient(parent) as client:
        assert client.post("/sub/").json() == "process"
        client.portal.call(offload.join)  # type: ignore[union-attr]  # set inside `with`


async def test_an_offload_started_without_its_app_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    offload = Offload()
    app = lane_app()
    async with offload, serve(app) as client:  # not offload.lifespan(app)
        assert (await client.post("/")).json() == "thread"
    assert "an Offload is running on this event loop, but the requests of" in caplog.text
    assert "offload.lifespan(app)" in caplog.text
