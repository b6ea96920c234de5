"""The RQ worker class of the backend tests (`--worker-class tests.backends.rq_worker.Worker`)."""

from __future__ import annotations

from fastapi_offload.backends.rq import rq_worker_class

from . import control_jobs, jobs

Worker = rq_worker_class(jobs, control_jobs)
