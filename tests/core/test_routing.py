"""Routing (`core/routing.py`): where a call runs, and the checks made in the request."""

from __future__ import annotations

import functools
import gc
import re
import weakref
from typing import Any

import anyio
import pytest

from fastapi_offload import ConfigError, NotOffloadable, Offload, cpu_bound
from fastapi_offload._config import OffloadConfig
from fastapi_offload._settings import NO_SETTINGS, TaskSettings
from fastapi_offload.core.callables import Profiles
from fastapi_offload.core.ids import IdSource
from fastapi_offload.core.routing import build_record, choose_lane

from ..apps import jobs


def route(func: Any, options: TaskSettings = NO_SETTINGS, **config: Any) -> str:
    record = build_record(
        func,
        (),
        {},
        options,
        OffloadConfig.resolve(config, environ={}),
        remote=False,
        cpu_bound=(),
        profiles=Profiles(),
        new_id=IdSource(),
    )
    return record.lane


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "thread"),
        ({"is_async": True}, "loop"),
        ({"promote": True}, "process"),
        ({"defaults": TaskSettings("process")}, "process"),
        ({"remote": True, "defaults": TaskSettings("process")}, "remote"),
        ({"routes": {"m.*": "thread"}, "remote": True}, "thread"),
        ({"routes": {"m.*": "thread"}, "option": "process"}, "process"),
    ],
)
def test_precedence_option_rule_backend_decorator_kind(
    kwargs: dict[str, Any], expected: str
) -> None:
    settings: dict[str, Any] = {
        "option": None,
        "routes": {},
        "remote": False,
        "defaults": None,
        "promote": False,
    }
    settings.update(kwargs)
    is_async = settings.pop("is_async", False)
    assert choose_lane(is_async, "m.f", **settings) == expected


def test_a_sync_function_cannot_go_to_the_loop_lane_nor_an_async_one_to_threads() -> None:
    with pytest.raises(NotOffloadable, match="is a sync function"):
        route(jobs.nap, TaskSettings(lane="loop"))
    with pytest.raises(NotOffloadable, match="is an `async def` callable"):
        route(jobs.async_sleep, TaskSettings(lane="thread"))
    with pytest.raises(NotOffloadable, match="takes a callable first"):
        route("jobs.nap")


def test_a_closure_cannot_go_to_the_process_lane_and_the_error_says_why() -> None:
    def local() -> None:
        pass

    with pytest.raises(NotOffloadable, match="defined inside another function"):
        route(local, TaskSettings(lane="process"))
    assert route(functools.partial(jobs.write, "/dev/null"), TaskSettings(lane="process")) == (
        "process"
    )


@cpu_bound
def declared_job() -> None:
    pass


def test_decorators_and_rules_route() -> None:
    assert route(declared_job) == "process"
    assert route(jobs.write, routes={"tests.apps.jobs.*": "process"}) == "process"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("timeout", True),
        ("timeout", "5"),
        ("timeout", 0),
        ("timeout", float("nan")),
        ("retries", 1.5),
        ("retries", True),
        ("retry_delay", "1"),
        ("lane", "threads"),
    ],
)
def test_per_call_settings_are_validated_like_config(setting: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"^{setting}="):
        TaskSettings(**{setting: value})


def test_ids_are_32_hex_digits_and_do_not_repeat() -> None:
    new_id = IdSource()
    ids = {new_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


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
