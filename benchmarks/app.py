"""The benchmark app: `uvicorn benchmarks.app:app` with `BENCH_STRATEGY` set.

`BENCH_STRATEGY` is `offload` (with `BENCH_LANE`), one of the alternatives in
`_baseline_app`, or one of the dispatch scenario's peers in `_peer_app`. Each strategy
gets an app of its own, so that no strategy pays for another's dependencies in its
request path.
"""

from __future__ import annotations

import os

from fastapi import FastAPI


def _build() -> FastAPI:
    strategy = os.environ.get("BENCH_STRATEGY", "offload")
    if strategy == "offload":
        from . import _offload_app

        return _offload_app.build(_offload_app.lane_from_env())
    if strategy in ("taskflow", "celery-delay", "rq"):
        from . import _peer_app

        return _peer_app.build(strategy)
    from . import _baseline_app

    return _baseline_app.build(strategy)


app = _build()
