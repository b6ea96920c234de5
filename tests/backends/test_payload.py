"""The argument check every remote backend applies in `prepare`, inside the request."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest

from fastapi_offload import NotOffloadable
from fastapi_offload.backends import check_call

from . import jobs
from ._support import call_of


def test_json_values_pass_and_tuples_are_allowed() -> None:
    call = call_of(jobs.whoami, "a", 1, 2.5, True, None, [1, (2, 3)], {"k": {"n": [None]}})
    check_call(call, backend="celery", serializer="json")


def test_the_message_names_the_argument_the_path_inside_it_and_the_type() -> None:
    call = call_of(jobs.whoami, options={"when": [1, datetime(2030, 1, 1)]})
    with pytest.raises(NotOffloadable) as caught:
        check_call(call, backend="rq", serializer="json")
    message = str(caught.value)
    assert "argument 'options'" in message
    assert "kwargs['options']['when'][1]" in message
    assert "datetime.datetime" in message
    assert "rq backend" in message and "OFFLOAD_SERIALIZER=pickle" in message
    assert isinstance(caught.value, TypeError)


def test_a_positional_argument_is_named_by_position() -> None:
    with pytest.raises(NotOffloadable, match=r"positional argument 1 of .* \(args\[1\]\)"):
        check_call(call_of(jobs.whoami, "ok", {1, 2}), backend="celery", serializer="json")


def test_non_str_keys_and_cycles_are_refused() -> None:
    with pytest.raises(NotOffloadable, match="non-str dict key 1"):
        check_call(call_of(jobs.whoami, {1: "a"}), backend="celery", serializer="json")
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(NotOffloadable, match="circular reference"):
        check_call(call_of(jobs.whoami, loop), backend="celery", serializer="json")


def test_with_pickle_only_what_does_not_pickle_is_refused() -> None:
    check_call(call_of(jobs.whoami, datetime(2030, 1, 1)), backend="rq", serializer="pickle")
    with pytest.raises(NotOffloadable, match=r"argument 'lock' .* cannot be pickled"):
        check_call(call_of(jobs.whoami, lock=threading.Lock()), backend="rq", serializer="pickle")


def test_a_task_a_worker_cannot_import_is_refused() -> None:
    with pytest.raises(NotOffloadable, match="__main__"):
        check_call(call_of("__main__.job"), backend="celery", serializer="json")
    with pytest.raises(NotOffloadable, match="inside another function"):
        check_call(call_of("app.make.<locals>.job"), backend="celery", serializer="json")
