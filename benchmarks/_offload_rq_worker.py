"""RQ worker class of the `offload-rq` strategy (OffloadTasks with the RQ backend).

`rq worker --worker-class benchmarks._offload_rq_worker.Worker QUEUE`: it registers the
benchmark jobs and nothing else.
"""

from __future__ import annotations

from fastapi_offload.backends.rq import rq_worker_class

from . import _jobs

Worker = rq_worker_class(_jobs.crunch, _jobs.block, _jobs.noop)
