"""The Celery worker of the example: it runs the tasks of `examples.remote.jobs`, only.

    celery -A examples.remote.celery_worker worker --pool=prefork --concurrency=2

Broker and result store come from the same `OFFLOAD_*` variables as the web app.
"""

from __future__ import annotations

from fastapi_offload.backends.celery import celery_worker_app

from . import jobs

app = celery_worker_app(jobs)
