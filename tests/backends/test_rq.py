"""What is particular to RQ: the worker class, JSON-only jobs, callbacks, settings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from fastapi_offload import ConfigError, NotOffloadable
from fastapi_offload.backends import UnregisteredTask
from fastapi_offload.backends.rq import RQBackend, rq_worker_class
from fastapi_offload.backends.rq.jobs import _error_of

from . import jobs
from ._support import call_of
from .conftest import TEST_QUEUE, WorkerProcess


@pytest.mark.redis
def test_the_worker_never_unpickles_a_job(
    rq_url: str, rq_worker: WorkerProcess, tmp_path: Path
) -> None:
    # A stock client enqueues a pickled job naming a registered task: the JSON-only
    # worker cannot read it, so nothing runs (unpickling would run the sender's code).
    out = tmp_path / "pid.txt"
    connection = redis.Redis.from_url(rq_url)
    try:
        queue = Queue(TEST_QUEUE, connection=connection, serializer="pickle")
        job = queue.enqueue_call("tests.backends.jobs.whoami", args=(str(out),))
        deadline = time.monotonic() + 10
        while job.get_status(refresh=True) in ("queued", "started"):
            assert time.monotonic() < deadline, rq_worker.log()
            time.sleep(0.05)
        assert job.get_status() == "failed"
        assert not out.exists()
    finally:
        connection.close()


@pytest.mark.redis
def test_the_worker_class_registers_the_targets_and_reads_json_only(rq_url: str) -> None:
    worker_class = rq_worker_class(jobs)
    connection = redis.Redis.from_url(rq_url)
    try:
        # As `rq worker` builds them: a pickle-reading queue from the command line.
        cli_queue = Queue(TEST_QUEUE, connection=connection, serializer="pickle")
        worker = worker_class([cli_queue], connection=connection, serializer="pickle")
        assert worker.serializer is JSONSerializer
        assert all(queue.serializer is JSONSerializer for queue in worker.queues)
        registry = worker.job_class.registry  # type: ignore[attr-defined]  # set by rq_worker_class
        assert "tests.backends.jobs.whoami" in registry
        assert "tests.backends.jobs.not_registered" not in registry
    finally:
        connection.close()


@pytest.mark.redis
def test_a_job_naming_an_unregistered_task_or_callbacks_gets_neither(rq_url: str) -> None:
    connection = redis.Redis.from_url(rq_url)
    try:
        worker = rq_worker_class(jobs)([TEST_QUEUE], connection=connection)
        job_class: type[Job] = worker.job_class
        job = job_class.create("tests.backends.jobs.whoami", args=("x",), connection=connection)
        assert job.func is jobs.whoami
        job._success_callback_name = "os.system"
        job._failure_callback_name = "os.system"
        job._stopped_callback_name = "os.system"
        assert job.success_callback is None
        assert job.failure_callback is None
        assert job.stopped_callback is None
        other = job_class.create("os.system", args=("true",), connection=connection)
        with pytest.raises(UnregisteredTask, match=r"'os\.system'"):
            _ = other.func
    finally:
        connection.close()


def test_a_failure_the_worker_could_not_describe_reads_in_the_same_format() -> None:
    # A work horse that died (killed, out of memory) leaves only RQ's formatted traceback:
    # its last line is read as the `repr` the worker stores for every other failure.
    traceback = "Traceback (most recent call last):\n  ...\nmyapp.jobs.QuotaError: over: 3"
    assert _error_of(traceback) == "QuotaError('over: 3')"
    assert _error_of("Traceback ...\nKeyError") == "KeyError()"
    died = "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9); "
    assert _error_of(died) == died.strip()
    assert _error_of(None) is None


def test_a_bad_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a Redis URL"):
        RQBackend(redis_url="http://example.com")
    with pytest.raises(ConfigError, match="queue=''"):
        RQBackend(redis_url="redis://127.0.0.1:1/0", queue="")


def test_prepare_refuses_a_task_defined_in_main() -> None:
    backend = RQBackend(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(NotOffloadable, match="__main__"):
        backend.prepare(call_of("__main__.job"))
