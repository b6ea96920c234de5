"""A backend whose queue no worker serves says so at start-up, instead of a silent `pending`.

Each test runs with Celery and with RQ, against the real session workers (or a queue
nobody listens on).
"""

from __future__ import annotations

import logging
import time
import uuid

import anyio
import pytest

from fastapi_offload.backends.celery import CeleryBackend
from fastapi_offload.backends.rq import RQBackend

from .conftest import TEST_QUEUE

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

KINDS = ["celery", "rq"]


def _backend(kind: str, url: str, queue: str, timeout: float = 2) -> CeleryBackend | RQBackend:
    if kind == "celery":
        return CeleryBackend(broker_url=url, queue=queue, broker_timeout=timeout)
    return RQBackend(redis_url=url, queue=queue, broker_timeout=timeout)


async def _record(caplog: pytest.LogCaptureFixture, kind: str, within: float = 5) -> str:
    # Celery asks in the background (its workers are given a second to answer): wait for
    # the line that says how it went, whichever it is.
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for record in caplog.records:
            if (
                record.name == f"fastapi_offload.backends.{kind}"
                and "worker" in record.getMessage()
            ):
                return f"{record.levelname} {record.getMessage()}"
        await anyio.sleep(0.05)
    raise AssertionError(f"no line about workers: {caplog.text}")


@pytest.mark.parametrize("kind", KINDS)
async def test_no_worker_for_the_queue_is_a_warning_naming_queue_broker_and_command(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    base: str = request.getfixturevalue(f"{kind}_url")
    # Redis's default user takes any password: this one must not reach the log.
    url = base.replace("redis://", "redis://default:s3cret@")
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    backend = _backend(kind, url, queue)
    caplog.set_level(logging.INFO, logger="fastapi_offload.backends")
    await backend.start()
    try:
        line = await _record(caplog, kind)
        assert line.startswith("WARNING no"), line
        assert f"queue {queue!r}" in line and "redis://default:***@" in line, line
        assert "s3cret" not in caplog.text
        start = "celery -A <worker module> worker -Q" if kind == "celery" else "rq worker"
        assert start in line and queue in line.partition("Start one with:")[2], line
        if kind == "rq":  # Celery's line came from `workers()` already (a second each)
            assert await backend.workers() == 0
    finally:
        await backend.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_live_worker_for_the_queue_is_counted_and_no_warning(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    request.getfixturevalue(f"{kind}_worker")
    backend = _backend(kind, request.getfixturevalue(f"{kind}_url"), TEST_QUEUE)
    caplog.set_level(logging.INFO, logger="fastapi_offload.backends")
    await backend.start()
    try:
        line = await _record(caplog, kind)
        assert line.startswith("INFO 1 "), line
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
        if kind == "rq":
            assert await backend.workers() == 1
    finally:
        await backend.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_broker_that_never_answers_does_not_hold_start_up(
    kind: str, silent_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    backend = _backend(kind, f"redis://127.0.0.1:{silent_port}/0", "q", timeout=0.5)
    started = time.monotonic()
    await backend.start()
    assert time.monotonic() - started < 3  # the connect check's two attempts, not more
    assert "not reachable at startup" in caplog.text
    started = time.monotonic()
    assert await backend.workers() is None
    assert time.monotonic() - started < 4  # bounded, whatever the client's retries
    await backend.stop()
