"""Routing (`core/routing.py`): where a call runs, and the checks made in the request."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from fastapi_offload import NotOffloadable, cpu_bound
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
