"""The RQ worker of the example: it runs the tasks of `examples.remote.jobs`, only.

    rq worker --with-scheduler --worker-class examples.remote.rq_worker.Worker

`--with-scheduler` lets RQ run retries that wait (`retry_delay`). Given no `--url` and no
queue, the worker connects to `OFFLOAD_REDIS_URL` and listens on `OFFLOAD_RQ_QUEUE`, the
same variables the app reads.
"""

from __future__ import annotations

from fastapi_offload.backends.rq import rq_worker_class

from . import jobs

Worker = rq_worker_class(jobs)
