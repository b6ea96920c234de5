"""The pieces both workers share, and how records read back, without a broker."""

from __future__ import annotations

import logging
import math

import pytest

from fastapi_offload import ConfigError, TaskState, TaskTimeout
from fastapi_offload._context import bound, report_progress
from fastapi_offload._remote_settings import RemoteSettings, to_progress
from fastapi_offload.backends._worker import RemoteContext, kept_result, retried, retry_on_from
from fastapi_offload.backends.celery import task_info


class Failing(RemoteContext):
    __slots__ = ("error", "tries")

    passthrough = (TimeoutError,)

    def __init__(self, error: Exception) -> None:
        super().__init__("0" * 32, "app.jobs.f")
        self.error = error
        self.tries = 0

    def write(self, fraction: float, message: str | None) -> None:
        self.tries += 1
        raise self.error


def test_a_report_that_cannot_be_written_is_dropped_and_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = Failing(ConnectionError("the broker is gone"))
    with caplog.at_level(logging.DEBUG, "fastapi_offload.worker"), bound(context):
        report_progress(0.1)
        context.publish(0.2, None)  # what the coalescing would call later
        context.publish(0.3, "again")
    assert context.tries == 3
    levels = [record.levelno for record in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "app.jobs.f" in caplog.records[0].getMessage()
    assert "the broker is gone" in caplog.records[0].getMessage()


def test_a_timeout_landing_in_a_write_reaches_the_task() -> None:
    context = Failing(TimeoutError("the soft limit"))
    with pytest.raises(TimeoutError, match="the soft limit"):
        context.publish(0.5, None)


def test_what_a_json_worker_keeps_of_a_return_value(caplog: pytest.LogCaptureFixture) -> None:
    assert kept_result("f", {"a": [1]}, "json", 100) == ({"a": [1]}, None)
    assert kept_result("f", None, "json", 1) == (None, None)
    with caplog.at_level(logging.WARNING, "fastapi_offload.worker"):
        value, why = kept_result("app.jobs.f", {1, 2}, "json", 100)
    assert value is None
    assert why is not None and why.startswith("result not kept: set is not JSON-serializable")
    assert "app.jobs.f" in caplog.text and "not JSON-serializable" in caplog.text
    value, why = kept_result("f", "x" * 200, "json", 100)
    assert value is None and why is not None and "too large" in why
    # Pickle stores anything; the status checks it on reading.
    assert kept_result("f", {1, 2}, "pickle", 100) == ({1, 2}, None)


def test_retry_on_matches_by_type_path_and_bases() -> None:
    assert retried(None, ValueError("x"))
    assert retried(("builtins.LookupError",), KeyError("k"))
    assert not retried(("builtins.KeyError",), ValueError("v"))
    assert not retried(("fastapi_offload.TaskTimeout",), RuntimeError("slow"))
    # A queue's own timeout error answers to TaskTimeout, as on the local lanes.
    assert retried(("fastapi_offload.TaskTimeout",), RuntimeError("slow"), timeout=True)
    assert retried(("builtins.TimeoutError",), TaskTimeout("slow"))


def test_retry_on_as_it_travelled() -> None:
    assert retry_on_from(["builtins.KeyError"]) == ("builtins.KeyError",)
    assert retry_on_from([]) == ()
    assert retry_on_from(None) is None
    assert retry_on_from("builtins.KeyError") is None  # malformed: the default policy
    assert retry_on_from([1]) is None


def test_only_a_fraction_from_0_to_1_is_progress() -> None:
    assert to_progress(0.5, "half") == (0.5, "half")
    assert to_progress(1, None) == (1.0, None)
    assert to_progress(0.5, 3) == (0.5, None)
    for bad in (1.5, -0.1, math.nan, True, "0.5", None):
        assert to_progress(bad, "m") == (None, None), bad


def test_celery_records_of_progress_results_and_revokes() -> None:
    progress = {"status": "PROGRESS", "result": {"progress": 0.4, "message": "m"}, "name": "f"}
    info = task_info("abc", progress, "celery")
    assert info is not None and info.state is TaskState.RUNNING
    assert (info.progress, info.progress_message, info.name) == (0.4, "m", "f")
    success = {"status": "SUCCESS", "result": (1, "two"), "name": "f"}
    info = task_info("abc", success, "celery")
    assert info is not None and (info.result, info.error) == ([1, "two"], None)
    why = "result not kept: set is not JSON-serializable (...)"
    dropped = {"status": "SUCCESS", "result": {"offload_result_not_kept": why}}
    info = task_info("abc", dropped, "celery")
    assert info is not None and info.state is TaskState.SUCCEEDED
    assert (info.result, info.error) == (None, why)
    large = task_info("abc", {"status": "SUCCESS", "result": "x" * 50}, "c", result_max_bytes=10)
    assert large is not None and large.result is None
    assert large.error is not None and "too large" in large.error
    revoked = task_info("abc", {"status": "REVOKED", "result": Exception("terminated")}, "c")
    assert revoked is not None and revoked.state is TaskState.CANCELLED
    assert revoked.error == "cancelled by request"


def test_the_result_limit_is_read_from_the_environment() -> None:
    assert RemoteSettings.from_env({}).result_max_bytes == 1_048_576
    settings = RemoteSettings.from_env({"OFFLOAD_RESULT_MAX_BYTES": "2_000"})
    assert settings.result_max_bytes == 2000
    for bad in ("0", "-1", "1.5", "lots"):
        with pytest.raises(ConfigError, match="OFFLOAD_RESULT_MAX_BYTES"):
            RemoteSettings.from_env({"OFFLOAD_RESULT_MAX_BYTES": bad})
