"""An RQ worker listens where the web process sends: `OFFLOAD_REDIS_URL`, like the app.

`rq worker` alone connects to localhost:6379/0 unless given `--url`; the worker class
built by `rq_worker_class` connects to `OFFLOAD_REDIS_URL` when the command line said
nothing, and says so loudly when it was told another Redis.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
import redis

from fastapi_offload import TaskState
from fastapi_offload.backends.rq import RQBackend, rq_worker_class

from . import jobs
from ._support import call_of, wait_for_state
from .conftest import NO_URL_QUEUE, TEST_QUEUE, WorkerProcess, _rq_command, _start_worker

pytestmark = [pytest.mark.redis]


@pytest.mark.anyio
async def test_a_worker_given_no_url_runs_the_tasks_of_a_nonzero_db(
    rq_url: str, rq_no_url_worker: WorkerProcess, tmp_path: Path
) -> None:
    # The worker was started with neither --url nor a queue name: only OFFLOAD_REDIS_URL
    # (db 14) and OFFLOAD_RQ_QUEUE said where to listen.
    args = rq_no_url_worker.process.args
    assert rq_url.endswith("/14") and isinstance(args, list) and "--url" not in args
    log = rq_no_url_worker.log()
    assert f"connected to {rq_url} (OFFLOAD_REDIS_URL)" in log, log
    assert f"Listening on {NO_URL_QUEUE}" in log, log
    backend = RQBackend(redis_url=rq_url, queue=NO_URL_QUEUE)
    try:
        out = tmp_path / "pid.txt"
        call = call_of(jobs.whoami, str(out))
        await backend.submit(call)
        info = await wait_for_state(
            backend, call.id, [TaskState.SUCCEEDED, TaskState.FAILED], log=rq_no_url_worker.log
        )
        assert info.state is TaskState.SUCCEEDED, info
        assert int(out.read_text()) == info.result
        assert await backend.workers() == 1
    finally:
        await backend.stop()


def test_a_worker_told_another_redis_says_so(
    rq_url: str, other_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A real `rq worker --url <db 15>` while OFFLOAD_REDIS_URL says db 14; --burst: it
    # exits once its (empty) queue is drained.
    log = tmp_path_factory.mktemp("rq") / "rq-other-url.log"
    command = _rq_command(other_url, "tests.backends.rq_worker.Worker", TEST_QUEUE)
    command.insert(command.index("worker") + 1, "--burst")
    started = _start_worker(command, {"OFFLOAD_REDIS_URL": rq_url}, log, "fastapi-offload")
    worker = next(started)
    try:
        worker.process.wait(timeout=20)
    except subprocess.TimeoutExpired:  # pragma: no cover - only when the worker hangs
        pytest.fail(f"rq worker --burst did not exit:\n{worker.log()}")
    finally:
        started.close()
    text = worker.log()
    assert f"listens on {other_url} (from --url or RQ_REDIS_URL)" in text, text
    assert f"OFFLOAD_REDIS_URL is {rq_url}" in text and "will stay pending" in text, text


def test_a_worker_built_in_code_keeps_its_connection_and_warns_on_a_mismatch(
    rq_url: str,
    other_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OFFLOAD_REDIS_URL", rq_url)
    worker_class = rq_worker_class(jobs)
    for url, warned in ((rq_url, False), (other_url, True)):
        connection = redis.Redis.from_url(url)
        caplog.clear()
        try:
            with caplog.at_level(logging.INFO, logger="rq.worker"):
                worker = worker_class([TEST_QUEUE], connection=connection)
            assert worker.connection is connection
            assert [queue.name for queue in worker.queues] == [TEST_QUEUE]
            warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert bool(warnings) is warned, warnings
            if warned:
                assert "(from its connection)" in warnings[0], warnings
        finally:
            connection.close()
