"""What is particular to Celery: the SENT marker, the result store, refused content."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from celery import Celery

from fastapi_offload import BackendUnavailable, ConfigError, TaskState
from fastapi_offload.backends.celery import (
    SUBMITTED,
    CeleryBackend,
    celery_worker_app,
    task_info,
)

from . import jobs
from ._support import call_of, wait_for_state
from .conftest import TEST_QUEUE, WorkerProcess

pytestmark = [
    # Celery's Redis result backend (celery 5.7) stores states with `setex`, which
    # redis-py 8 deprecates; the warning comes from Celery's code, not ours.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]


def test_no_record_means_not_vouched_for() -> None:
    # Celery answers PENDING for any id it has no record of.
    assert task_info("abc", {"status": "PENDING", "result": None}, "celery") is None


def test_the_marker_reads_as_pending_with_its_submission_time() -> None:
    meta = {"status": SUBMITTED, "result": {"name": "app.jobs.f", "submitted_at": 12.5}}
    info = task_info("abc", meta, "celery")
    assert info is not None
    assert (info.state, info.name, info.created_at, info.attempts) == (
        TaskState.PENDING,
        "app.jobs.f",
        12.5,
        0,
    )


def test_celery_states_map_onto_task_states() -> None:
    done = datetime(2030, 1, 1, tzinfo=timezone.utc)
    failure = {
        "status": "FAILURE",
        "result": ValueError("boom"),
        "date_done": done.isoformat(),
        "name": "app.jobs.f",
        "retries": 2,
    }
    info = task_info("abc", failure, "celery")
    assert info is not None
    assert info.state is TaskState.FAILED and info.error == "ValueError('boom')"
    assert info.finished_at == done.timestamp() and info.attempts == 3
    retry = task_info("abc", {"status": "RETRY", "result": KeyError("k"), "retries": 0}, "c")
    assert retry is not None and retry.state is TaskState.PENDING and retry.error
    revoked = task_info("abc", {"status": "REVOKED", "result": None}, "celery")
    assert revoked is not None and revoked.state is TaskState.CANCELLED
    custom = task_info("abc", {"status": "PROGRESS", "result": {"done": 3}}, "celery")
    assert custom is not None and custom.state is TaskState.RUNNING


def test_the_stamped_times_are_created_and_started_in_every_later_record() -> None:
    # The web process stamps the message when it sends it, the worker when the task
    # starts; Celery's extended results copy the stamps into each record it writes.
    stamps = {
        "offload_submitted_at": 10.0,
        "offload_started_at": 11.0,
        "stamped_headers": ["offload_submitted_at", "offload_started_at"],
    }
    records = [
        ("STARTED", {"pid": 1, "hostname": "w"}),
        ("PROGRESS", {"progress": 0.5, "message": None}),
        ("RETRY", KeyError("k")),
        ("SUCCESS", 1),
        ("FAILURE", ValueError("x")),
    ]
    for status, result in records:
        info = task_info("abc", {"status": status, "result": result, **stamps}, "celery")
        assert info is not None and (info.created_at, info.started_at) == (10.0, 11.0), status
    # A stamp may come back as a one-item list; a task not started has no start time.
    listed = task_info("abc", {"status": "STARTED", "offload_started_at": [11.0]}, "celery")
    assert listed is not None and listed.started_at == 11.0
    sent = {"status": SUBMITTED, "result": {"name": "f", "submitted_at": 9.0}, **stamps}
    marker = task_info("abc", sent, "celery")
    assert marker is not None and (marker.created_at, marker.started_at) == (9.0, None)


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_task_no_worker_has_taken_yet_is_pending_not_unknown(celery_url: str) -> None:
    # The unknown-id problem: without the marker this id would read PENDING either way.
    backend = CeleryBackend(broker_url=celery_url, queue="nobody-listens-here")
    call = call_of(jobs.whoami, "x")
    before = time.time()
    await backend.submit(call)
    info = await backend.status(call.id)
    assert info is not None and info.state is TaskState.PENDING
    assert info.name == "tests.backends.jobs.whoami"
    assert info.created_at is not None and info.created_at >= before
    assert await backend.status(call_of(jobs.whoami, "x").id) is None
    await backend.stop()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_failed_publish_leaves_no_marker_behind(celery_url: str, closed_port: int) -> None:
    # Result store up, broker down: the task was not accepted, so it must not look pending.
    backend = CeleryBackend(
        broker_url=f"redis://127.0.0.1:{closed_port}/0", result_backend=celery_url
    )
    call = call_of(jobs.whoami, "x")
    with pytest.raises(BackendUnavailable):
        await backend.submit(call)
    assert await backend.status(call.id) is None
    await backend.stop()


@pytest.mark.anyio
@pytest.mark.redis
async def test_without_a_result_store_tasks_run_and_status_defers_to_the_core(
    celery_url: str, celery_worker: WorkerProcess, tmp_path: Path
) -> None:
    backend = CeleryBackend(broker_url=celery_url, result_backend=None, queue=TEST_QUEUE)
    out = tmp_path / "pid.txt"
    call = call_of(jobs.whoami, str(out))
    await backend.submit(call)
    assert await backend.status(call.id) is None
    # The worker still runs it (and stores its result, with its own settings).
    checker = CeleryBackend(broker_url=celery_url, result_backend=celery_url, queue=TEST_QUEUE)
    info = await wait_for_state(checker, call.id, [TaskState.SUCCEEDED], log=celery_worker.log)
    assert info.state is TaskState.SUCCEEDED and out.exists()
    await backend.stop()
    await checker.stop()


@pytest.mark.redis
def test_the_worker_refuses_pickled_messages(
    celery_url: str, celery_worker: WorkerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "pid.txt"
    sender = Celery("attacker", broker=celery_url, set_as_current=False)
    sender.conf.update(accept_content=["pickle", "json"], broker_connection_retry_on_startup=True)
    try:
        sender.send_task(
            "tests.backends.jobs.whoami",
            args=[str(out)],
            queue=TEST_QUEUE,
            serializer="pickle",
            task_id="pickled-" + call_of(jobs.whoami, "x").id,
        )
    finally:
        sender.close()
    celery_worker.wait_for_log("Refusing to deserialize untrusted content of type pickle")
    assert not out.exists()


def test_the_worker_app_registers_exactly_the_targets() -> None:
    app = celery_worker_app(jobs, broker_url="redis://127.0.0.1:1/0", queue="q")
    ours = sorted(name for name in app.tasks if not name.startswith("celery."))
    assert ours == [
        "tests.backends.jobs.async_whoami",
        "tests.backends.jobs.fail",
        "tests.backends.jobs.flaky",
        "tests.backends.jobs.sleepy",
        "tests.backends.jobs.whoami",
    ]
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_default_queue == "q"
    assert app.conf.task_track_started is True


def test_a_bad_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="serializer='yaml'"):
        CeleryBackend(broker_url="redis://x", result_backend=None, serializer="yaml")  # type: ignore[arg-type]  # the point of the test
    with pytest.raises(ConfigError, match="broker_timeout=0"):
        CeleryBackend(broker_url="redis://x", result_backend=None, broker_timeout=0)
