"""The RQ worker of the example: it runs the tasks of `examples.remote.jobs`, only.

    rq worker --with-scheduler --url "$OFFLOAD_REDIS_URL" \
        --worker-class examples.remote.rq_worker.Worker default

`--with-scheduler` lets RQ run retries that wait (`retry_delay`); the queue name
(`default`) must match `OFFLOAD_RQ_QUEUE`.
"""

from __future__ import annotations

from fastapi_offload.backends.rq import rq_worker_class

from . import jobs

Worker = rq_worker_class(jobs)
