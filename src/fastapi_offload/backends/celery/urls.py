"""Which broker URLs and result stores the Celery backend and its worker app accept.

Both sides call these, so a setting that cannot work is refused where it is read, with
the variable to change, instead of showing up later as tasks that stay `pending`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import EllipsisType
from typing import Any

import kombu.connection
from kombu.transport import resolve_transport

from ..._errors import ConfigError
from ..._remote_settings import safe_url

__all__ = ["celery_variables", "check_broker_url", "check_result_store", "result_store"]

_REDIS = ("redis://", "rediss://")
# kombu leaves `Connection.__init__` unannotated.
_Connection: Any = kombu.connection.Connection
_EXAMPLES = "e.g. redis://127.0.0.1:6379/0 or db+sqlite:///celery-results.db"


def result_store(broker_url: str, result_backend: str | EllipsisType | None) -> str | None:
    """The result store to use: `result_backend` as given (`None`: none, on purpose), or,
    when it is not given (`...`), the broker itself if that is Redis.

    Raises `ConfigError` when it is not given and the broker is not Redis, and for
    `rpc://`. Why refuse rather than pick a store for, say, RabbitMQ: the broker keeps
    no task states, and its result backend `rpc://` is not a store either (each state is
    a message to the one process that sent the task, read once), so another web process,
    or this one after a restart, could never read it; and the backend publishes with
    results disabled (see `CeleryBackend.__init__`), so no state would arrive at all.
    Defaulting to the Redis at `OFFLOAD_REDIS_URL` would depend on a server nobody asked
    for, and fail every submit where there is none. `none` keeps a store-less setup for
    whoever wants it, on purpose.
    """
    if result_backend is ...:
        if broker_url.startswith(_REDIS):
            return broker_url
        raise ConfigError(
            f"no result store: the Celery broker {safe_url(broker_url)} keeps no task states, "
            "so every task's status would stay pending. Set OFFLOAD_CELERY_RESULT_BACKEND "
            f"(or result_backend=) to a result store on both sides, {_EXAMPLES}; or to "
            "none to run without one (a task's status then comes from the web process "
            "that sent it, and stays pending)"
        )
    if result_backend is not None and result_backend.strip().lower().startswith("rpc://"):
        raise ConfigError(
            f"result_backend={safe_url(result_backend)!r} is not a store: rpc:// sends each "
            "state to the process that sent the task (here a publisher without results), "
            f"so statuses would stay pending. Use a result store, {_EXAMPLES}"
        )
    return result_backend


def check_broker_url(url: str) -> str:
    """`url` if kombu has a transport for it; raises `ConfigError` otherwise (the mistake
    would surface as a `KeyError` on the first submit)."""
    try:
        resolve_transport(_Connection(url).transport_cls)
    except Exception as exc:  # KeyError (no such transport), ValueError, ImportError
        raise ConfigError(
            f"broker_url={safe_url(url)!r} is not a broker Celery can use ({exc}); write "
            "e.g. redis://127.0.0.1:6379/0 or amqp://guest:guest@127.0.0.1:5672//"
        ) from None
    return url


def check_result_store(app: Any, url: str) -> Any:
    """`app.backend` (the result store client); raises `ConfigError` when Celery cannot
    build one for `url` (an unknown scheme, or its library is not installed)."""
    try:
        return app.backend
    except Exception as exc:  # ImproperlyConfigured, ImportError, ValueError...
        raise ConfigError(
            f"result_backend={safe_url(url)!r} is not a result store Celery can use "
            f"({type(exc).__name__}: {exc}); use {_EXAMPLES}"
        ) from None


def celery_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The `OFFLOAD_*` variable each Celery setting was read from (for `named_variable`)."""
    broker = "OFFLOAD_CELERY_BROKER_URL"
    if not environ.get(broker, "").strip():
        broker = "OFFLOAD_REDIS_URL"
    results = "OFFLOAD_CELERY_RESULT_BACKEND"
    if not environ.get(results, "").strip():
        results = broker  # the default store is the broker
    return {"broker_url": broker, "result_backend": results}
