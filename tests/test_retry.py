"""The retry policy: `retry_on` filters which failures are retried, `retry_backoff` spaces
the retries out (`_retry.py`), the same on every local lane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fastapi_offload import ConfigError, Offload, TaskState, TaskTimeout, task
from fastapi_offload._decorators import LaneName
from fastapi_offload._retry import BACKOFF_MAX, RetryPolicy, matches, retry_wait, type_names

from .apps import progress_jobs as jobs

pytestmark = pytest.mark.anyio


def test_without_backoff_every_wait_is_the_retry_delay() -> None:
    assert [retry_wait(2.0, n, False) for n in (1, 2, 10)] == [2.0, 2.0, 2.0]


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    for n in range(1, 8):
        full = 0.5 * 2 ** (n - 1)
        waits = [retry_wait(0.5, n, True) for _ in range(200)]
        assert all(full / 2 <= wait <= full for wait in waits)
        assert len(set(waits)) > 1  # jittered
    assert all(BACKOFF_MAX / 2 <= retry_wait(1.0, n, True) <= BACKOFF_MAX for n in (11, 50, 5000))


def test_the_policy_gives_up_after_its_retries_or_on_an_unnamed_failure() -> None:
    # The one policy the runner, InlineBackend and both remote workers ask.
    policy = RetryPolicy(retries=2, delay=0.5, retry_on=(type_names(OSError())[0],))
    oserror, valueerror = type_names(ConnectionError()), type_names(ValueError())
    assert [policy.next_wait(n, oserror) for n in (1, 2, 3)] == [0.5, 0.5, None]
    assert policy.next_wait(1, valueerror) is None
    assert RetryPolicy(retries=3, delay=2.0).waits() == [2.0, 2.0, 2.0]
    assert RetryPolicy().next_wait(1, valueerror) is None  # no retries by default


def test_retry_on_matches_the_type_and_its_bases() -> None:
    names = type_names(jobs.Flaky("x"))
    assert names[0] == "tests.apps.progress_jobs.Flaky"
    assert matches(("builtins.ConnectionError",), names)
    assert matches(("builtins.OSError",), names)
    assert not matches(("builtins.ValueError",), names)
    assert matches(None, names)


LANES = ["loop", "thread", "process"]


def failing(lane: str) -> Any:
    return jobs.fail_with_async if lane == "loop" else jobs.fail_with


@pytest.mark.parametrize("lane", LANES)
async def test_a_failure_not_in_retry_on_fails_at_once(lane: LaneName, tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"
    async with Offload() as offload:
        handle = await offload.options(
            lane=lane,
            retries=3,
            retry_delay=0,
            retry_on=(ConnectionError,),
        ).submit(failing(lane), "value", str(attempts))
        await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.FAILED and info.attempts == 1
    assert attempts.read_text().splitlines() == ["value"]


@pytest.mark.parametrize("lane", LANES)
async def test_a_failure_in_retry_on_or_a_subclass_is_retried(
    lane: LaneName, tmp_path: Path
) -> None:
    attempts = tmp_path / "attempts"
    async with Offload() as offload:
        handle = await offload.options(
            lane=lane,
            retries=2,
            retry_delay=0,
            retry_on=OSError,
        ).submit(failing(lane), "flaky", str(attempts))
        await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.FAILED and info.attempts == 3
    assert attempts.read_text().splitlines() == ["flaky"] * 3
    assert info.error is not None and "Flaky" in info.error


async def test_a_timeout_can_be_retried_by_name(tmp_path: Path) -> None:
    async with Offload() as offload:
        handle = await offload.options(
            retries=1, retry_delay=0, timeout=0.05, retry_on=(TaskTimeout,)
        ).submit(jobs.wait_for, str(tmp_path / "never"), 0.3)
        await offload.join()
        info = await offload.status(handle.id)
    assert (info.state, info.attempts) == (TaskState.FAILED, 2)


async def test_a_declared_policy_applies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    attempts = tmp_path / "attempts"
    declared = task(retries=3, retry_delay=0.02, retry_backoff=True, retry_on=(OSError,))(
        jobs.fail_with
    )
    try:
        async with Offload() as offload:
            handle = await offload.submit(declared, "os", str(attempts))
            await offload.join()
            info = await offload.status(handle.id)
    finally:
        del jobs.fail_with.__fastapi_offload__  # type: ignore[attr-defined]
    assert info.attempts == 4
    waits = [
        float(r.getMessage().split("retrying in ")[1].split(" s")[0])
        for r in caplog.records
        if "retrying in" in r.getMessage()
    ]
    assert len(waits) == 3
    for n, wait in enumerate(waits, start=1):
        full = 0.02 * 2 ** (n - 1)
        assert full / 2 <= wait <= full * 1.01


def test_retry_on_must_be_exception_types() -> None:
    with pytest.raises(ConfigError, match=r"retry_on=\('x',\) must be an exception type"):
        Offload().options(retry_on=("x",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"retry_on=.*int.*must be an exception type"):
        task(retry_on=(int,))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="retry_backoff='y' must be True or False"):
        task(retry_backoff="y")  # type: ignore[call-overload]
