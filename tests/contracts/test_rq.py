"""Contract: what the RQ worker class (`backends/rq/worker.py`) uses of RQ that is not
public API.

- `Job._execute()`: the job class overrides it to run registered tasks only, record
  failures and progress in the work horse, and keep results within their limits; RQ
  must call it from `Job.perform()`.
- `Job._success_callback_name` / `_failure_callback_name` / `_stopped_callback_name`:
  read to warn about a job's callbacks, which are dropped; RQ must read the callbacks
  through the `success_callback` / `failure_callback` / `stopped_callback` properties.

No Redis is needed: a job is made and performed in this process. A failure here means
an RQ release changed one of them: adapt `backends/rq/worker.py`, then the verified
versions in pyproject.toml (`rq<...`) and docs/quickstart.md (Install).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

from redis import Redis
from rq import Callback
from rq.job import Job

RQ = version("rq")


def changed(api: str) -> str:
    return (
        f"RQ {RQ} changed {api}, which is not public API; fastapi-offload's RQ worker class "
        "(backends/rq/worker.py, `_RegisteredJob`) relies on it. Adapt that class to this "
        "RQ, or keep `rq` below this version in pyproject.toml until it is, and update the "
        "verified versions in docs/quickstart.md (Install)."
    )


def _add(x: int) -> int:
    return x + 1


def _callback(*args: Any) -> None: ...


def _job(job_class: type[Job], **kwargs: Any) -> Job:
    # No connection is opened: making and performing a job does not reach Redis.
    return job_class.create(_add, args=(1,), connection=Redis(port=1), **kwargs)


def test_perform_runs_the_job_through_execute() -> None:
    calls: list[str] = []

    class Recorded(Job):
        def _execute(self) -> Any:
            calls.append("_execute")
            return super()._execute()

    assert "_execute" in vars(Job), changed("Job._execute (gone)")
    assert list(inspect.signature(Job._execute).parameters) == ["self"], changed(
        "Job._execute's signature"
    )
    assert _job(Recorded).perform() == 2, changed("Job.perform() / Job._execute()'s result")
    assert calls == ["_execute"], changed("Job.perform(), which no longer calls _execute()")


def test_callbacks_are_named_in_private_fields_and_read_through_properties() -> None:
    job = _job(
        Job,
        on_success=Callback(_callback),
        on_failure=Callback(_callback),
        on_stopped=Callback(_callback),
    )
    for kind in ("success", "failure", "stopped"):
        name = getattr(job, f"_{kind}_callback_name", "missing")
        assert name == f"{__name__}._callback", changed(f"Job._{kind}_callback_name")
        found = inspect.getattr_static(Job, f"{kind}_callback", None)
        assert isinstance(found, property), changed(f"Job.{kind}_callback (not a property)")
