"""The Celery worker module of the backend tests (`celery -A tests.backends.celery_worker`)."""

from __future__ import annotations

from fastapi_offload.backends.celery import celery_worker_app

from . import control_jobs, jobs

app = celery_worker_app(jobs, control_jobs)
