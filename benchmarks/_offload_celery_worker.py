"""Celery worker of the `offload-celery` strategy (OffloadTasks with the Celery backend).

`celery -A benchmarks._offload_celery_worker worker`: it registers the benchmark jobs,
and reads its broker and queue from the same `OFFLOAD_*` variables as the app.
"""

from __future__ import annotations

from fastapi_offload.backends.celery import celery_worker_app

from . import _jobs

app = celery_worker_app(_jobs.crunch, _jobs.block, _jobs.noop)
