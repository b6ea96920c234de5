"""Celery with RabbitMQ as its broker: a result store must be named, and then it all works.

RabbitMQ keeps no task states, so without `OFFLOAD_CELERY_RESULT_BACKEND` every status
would stay `pending` after success: both sides refuse to start instead (the reasons are
in `fastapi_offload.backends.celery.urls.result_store`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from fastapi_offload import ConfigError, TaskState
from fastapi_offload.backends import load_backend
from fastapi_offload.backends.celery import CeleryBackend, celery_worker_app

from . import jobs
from ._support import call_of, wait_for_state
from .conftest import AMQP_QUEUE, WorkerProcess

pytestmark = [
    # Celery's Redis result backend (celery 5.7) stores states with `setex`, which
    # redis-py 8 deprecates; the warning comes from Celery's code, not ours.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def test_an_amqp_broker_without_a_result_store_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_backend("celery", environ={"OFFLOAD_CELERY_BROKER_URL": AMQP})
    message = str(caught.value)
    assert "OFFLOAD_CELERY_RESULT_BACKEND" in message and "stay pending" in message
    assert "amqp://guest:***@127.0.0.1:5672//" in message and "guest:guest" not in message
    with pytest.raises(ConfigError, match="OFFLOAD_CELERY_RESULT_BACKEND"):
        CeleryBackend(broker_url=AMQP)


def test_the_worker_app_refuses_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_CELERY_BROKER_URL", AMQP)
    monkeypatch.delenv("OFFLOAD_CELERY_RESULT_BACKEND", raising=False)
    with pytest.raises(ConfigError, match="OFFLOAD_CELERY_RESULT_BACKEND"):
        celery_worker_app(jobs)
    monkeypatch.setenv("OFFLOAD_CELERY_RESULT_BACKEND", "none")
    assert celery_worker_app(jobs).conf.result_backend is None  # on purpose: allowed


def test_none_runs_without_a_store_on_purpose_and_rpc_is_refused() -> None:
    backend = load_backend(
        "celery",
        environ={"OFFLOAD_CELERY_BROKER_URL": AMQP, "OFFLOAD_CELERY_RESULT_BACKEND": "none"},
    )
    assert "result_backend=None" in repr(backend)
    with pytest.raises(ConfigError) as caught:
        load_backend(
            "celery",
            environ={"OFFLOAD_CELERY_BROKER_URL": AMQP, "OFFLOAD_CELERY_RESULT_BACKEND": "rpc://"},
        )
    assert str(caught.value).startswith("OFFLOAD_CELERY_RESULT_BACKEND='rpc://'")
    assert "not a store" in str(caught.value)


@pytest.mark.anyio
@pytest.mark.redis
async def test_with_a_result_store_tasks_run_and_report_every_state(
    amqp_url: str,
    celery_url: str,
    celery_amqp_worker: WorkerProcess,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = load_backend(
        "celery",
        environ={
            "OFFLOAD_CELERY_BROKER_URL": amqp_url,
            "OFFLOAD_CELERY_RESULT_BACKEND": celery_url,
            "OFFLOAD_CELERY_QUEUE": AMQP_QUEUE,
        },
    )
    assert isinstance(backend, CeleryBackend)
    caplog.set_level(logging.INFO, logger="fastapi_offload.backends")
    await backend.start()
    try:
        before = time.time()
        out = tmp_path / "pid.txt"
        ok, bad = call_of(jobs.whoami, str(out)), call_of(jobs.fail, "bad input")
        for call in (ok, bad):
            await backend.submit(call)
        finished = [TaskState.SUCCEEDED, TaskState.FAILED]
        log = celery_amqp_worker.log
        done = await wait_for_state(backend, ok.id, finished, log=log)
        assert done.state is TaskState.SUCCEEDED and done.result == int(out.read_text())
        failed = await wait_for_state(backend, bad.id, finished, log=log)
        assert failed.error == "ValueError('bad input')"
        for info in (done, failed):
            assert info.created_at is not None and info.started_at is not None, info
            assert info.finished_at is not None, info
            assert before <= info.created_at <= info.started_at <= info.finished_at, info
        # The start-up check went over AMQP too: one worker, no warning.
        assert await backend.workers() == 1
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    finally:
        await backend.stop()
