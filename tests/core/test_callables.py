"""What a callable is, as routing needs it (`core/callables.py`): the cache of its
profile keeps plain functions only, and no closure alive."""

from __future__ import annotations

import functools
import gc
import weakref
from typing import Any

import anyio
import pytest

from fastapi_offload import Offload
from fastapi_offload.core.callables import Profiles

from ..apps import jobs


def test_profiles_cache_plain_functions_only() -> None:
    profiles = Profiles()
    assert profiles(jobs.nap) is profiles(jobs.nap)
    bound = functools.partial(jobs.nap, 0)
    assert profiles(bound) is not profiles(bound)
    assert profiles(bound).name == "tests.apps.jobs.nap"


@pytest.mark.anyio
async def test_closures_are_not_kept_alive_by_the_routing_cache() -> None:
    class Payload:
        pass

    payload = Payload()
    alive = weakref.ref(payload)

    def make(data: Any) -> Any:
        # async: a thread would hold its last function until its next job (anyio's
        # worker threads do), which is not what this test is about.
        async def job() -> None:
            assert data is not None

        return job

    async with Offload() as offload:
        await offload.submit(make(payload))
        await offload.join()
        await anyio.sleep(0.01)  # the task's done-callback drops its record
        del payload
        gc.collect()
        assert alive() is None
