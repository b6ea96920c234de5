"""Remote backends. `fastapi_offload.backends.base` holds the protocol; adapters load lazily.

`load_backend("celery")` / `load_backend("rq")` imports the adapter only when asked,
so `import fastapi_offload` never imports Celery or RQ. Both read the same
`OFFLOAD_*` variables as their workers:

- `OFFLOAD_REDIS_URL` (`redis://127.0.0.1:6379/0`): RQ's Redis, and Celery's broker
  unless `OFFLOAD_CELERY_BROKER_URL` is set.
- `OFFLOAD_CELERY_BROKER_URL`, `OFFLOAD_CELERY_RESULT_BACKEND` (defaults to the broker
  URL when it is Redis, and must be set for another broker; `none` disables it),
  `OFFLOAD_CELERY_QUEUE` (`celery`).
- `OFFLOAD_RQ_QUEUE` (`default`). An RQ worker given no `--url` reads
  `OFFLOAD_REDIS_URL` too.
- `OFFLOAD_SERIALIZER` (`json`; `pickle` is a trust decision, see below).
- `OFFLOAD_BROKER_TIMEOUT` (`3` seconds), `OFFLOAD_RESULT_TTL` (`86400` seconds).

Arguments travel as JSON unless `OFFLOAD_SERIALIZER=pickle` is set on both sides.
Unpickling runs code chosen by whoever wrote the message, so pickle is only for a
broker that nobody untrusted can write to.

What a client sees, with a remote backend:

- `202` (or whatever the endpoint answers): the broker holds the task. `submit`
  returned before the response was sent (for Celery, after the `SENT` marker was
  written to the result store and the message published).
- `503` with `Retry-After`: the broker (or Celery's result store) could not be
  reached. Refused connections fail in milliseconds; a broker that does not answer
  is given up on after `OFFLOAD_BROKER_TIMEOUT` per attempt, two attempts at most.
  The task was not submitted; the reason, with the URL (password masked), is in the
  response's `detail` and logged at ERROR by `fastapi_offload.backends`.
- `NotOffloadable` (a `TypeError`, so a `500` unless handled) from `add_task`: an
  argument cannot travel; the message names it and says what to pass instead.
- `GET /tasks/{id}`: the backend's state (`pending`, `running`, `succeeded`,
  `failed` with the error, `cancelled`); an id the backend has no record of is
  answered from the web process's own record, else `unknown`. So is an id that
  fastapi-offload did not make (32 lowercase hex digits): the broker is not asked. A
  status lookup while the broker is down is a `503` too.
- In that status: `result`, a succeeded task's return value when it is JSON data of
  at most `OFFLOAD_RESULT_MAX_BYTES` (else `error` says why it was not kept; workers
  read the same variable); `progress` and `progress_message`, the task's last
  `report_progress()` while it runs (RQ keeps it after the end; Celery's final record
  replaces it).
- `Offload.cancel(id)`: a queued task never starts and reads `cancelled` at once; a
  running one is killed on its worker (Celery: SIGTERM to the pool process; RQ: the
  work horse) and reads `cancelled` moments later. `cancelled()` stays `False` in a
  remote task, since it is killed instead.

At start-up (the `Offload` lifespan), each backend connects once and logs a WARNING,
naming the queue, the broker and the command to run, when no worker serves its queue;
`await backend.workers()` counts them (`None`: cannot tell).

Writing an adapter for another queue: subclass `base.BaseBackend`, call
`check_call` in `prepare`, and on the worker side run only what a `TaskRegistry`
built from explicit targets resolves (it raises `UnregisteredTask` for the rest).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

from .._errors import ConfigError
from .._extras import install_hint
from ._payload import Serializer as Serializer
from ._payload import check_call as check_call
from ._registry import TaskRegistry as TaskRegistry
from ._registry import UnregisteredTask as UnregisteredTask
from ._registry import task_name as task_name
from .base import Backend

__all__ = [
    "BACKENDS",
    "Serializer",
    "TaskRegistry",
    "UnregisteredTask",
    "check_call",
    "load_backend",
    "task_name",
]

BACKENDS: Mapping[str, tuple[str, str, str]] = {
    "celery": ("fastapi_offload.backends.celery", "CeleryBackend", "celery"),
    "rq": ("fastapi_offload.backends.rq", "RQBackend", "rq"),
    # Test doubles (fastapi_offload.testing), so a test can switch an app built from
    # the environment with OFFLOAD_BACKEND alone.
    "inline": ("fastapi_offload.testing", "InlineBackend", ""),
    "recording": ("fastapi_offload.testing", "RecordingBackend", ""),
}
"""The names `backend=` / `OFFLOAD_BACKEND` accept besides `local`, each with the module
and class that implement it and the extra it needs (`pip install "fastapi-offload[extra]"`)."""


def load_backend(name: str, environ: Mapping[str, str] | None = None) -> Backend:
    """Build the backend called `name` from the `OFFLOAD_*` variables.

    Imports its module only now. Raises `ConfigError` for an unknown name (listing
    the accepted ones) or a bad variable (naming it), and `ImportError` with the command
    that installs the missing extra (`pip install -e "<checkout>[celery]"` from a
    checkout, else `pip install "fastapi-offload[celery]"`) when its library is missing.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in BACKENDS:
        raise ConfigError(
            f"backend={name!r} is not a backend; use one of {', '.join(BACKENDS)} "
            "(or 'local' for the in-process lanes), or pass a Backend instance"
        )
    module_name, class_name, extra = BACKENDS[key]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = install_hint(extra) if extra else ""
        if not hint or hint in str(exc):  # the adapter's own message already says it
            raise
        raise ImportError(f"the {key} backend needs its extra: {hint} ({exc})") from exc
    factory = getattr(module, class_name)
    backend: Backend = factory.from_env(os.environ if environ is None else environ)
    return backend


# Tracebacks and logs show the public path (as anyio does for its re-exports).
for _public in (TaskRegistry, UnregisteredTask, check_call, task_name):
    _public.__module__ = __name__
del _public
