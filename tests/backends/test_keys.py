"""Idempotency keys with a remote backend and its real workers: the store is the arbiter
(the claim is ours), and the id a held key answers with is the backend's own task id
(Celery's task_id, RQ's job_id), so its status is the worker's."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from fastapi_offload import Offload, TaskState

from . import jobs
from .conftest import WorkerProcess, backend_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.redis,
    # Celery's Redis result backend (celery 5.7) stores states with `setex`, which
    # redis-py 8 deprecates; the warning comes from Celery's code, not ours.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]


@pytest.mark.parametrize("kind", ["celery", "rq"])
async def test_a_held_key_answers_with_the_task_the_worker_runs_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    worker: WorkerProcess = request.getfixturevalue(f"{kind}_worker")
    url: str = request.getfixturevalue(f"{kind}_url")
    backend = backend_of(kind, url)
    out = tmp_path / "runs"
    async with Offload(backend=backend, store=f"sqlite:///{tmp_path / 'offload.db'}") as offload:
        first = await offload.options(key="order-42").submit(jobs.flaky, str(out), 0)
        again = await offload.options(key="order-42").submit(jobs.flaky, str(out), 0)
        assert (again.id, again.lane, again.existing) == (first.id, kind, True)
        deadline = time.monotonic() + 15
        while (info := await offload.status(first.id)).state is not TaskState.SUCCEEDED:
            assert time.monotonic() < deadline, f"{info}\n{worker.log()}"
            await anyio.sleep(0.05)
        after = await offload.options(key="order-42").submit(jobs.flaky, str(out), 0)
        assert (after.id, after.existing) == (first.id, True)  # handed off, within key_ttl
    await anyio.sleep(0.5)  # a second run, were there one, would have written by now
    assert len(out.read_text().splitlines()) == 1, worker.log()
