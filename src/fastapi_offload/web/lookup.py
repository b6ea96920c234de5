"""Which runtime serves a request: the one a lifespan started, else the app's default.

The default runtime (no lifespan) is one per app and event loop, kept in an anyio
`RunVar`: no class-level registry, so two apps or a mounted sub-app on one loop never
share one by accident, and nothing needs resetting between tests.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from anyio.lowlevel import RunVar
from starlette.requests import HTTPConnection

from .._config import OffloadConfig
from .._errors import ConfigError
from ..core.lifecycle import build_backend, lane_sizes, started_on_this_loop
from ..core.runtime import Runtime

__all__ = ["RUNTIME_KEY", "STATE_KEY", "mark_routes", "runtime_for"]

logger = logging.getLogger("fastapi_offload")

# Where `Offload.lifespan` leaves itself (for users: `request.state.fastapi_offload`)
# and its runtime (for `OffloadTasks`).
STATE_KEY = "fastapi_offload"
RUNTIME_KEY = "fastapi_offload_runtime"

# Per event loop (a `TestClient` without `with` runs each request on a new loop), per
# app. Weak keys: an app that is gone takes its default runtime along.
_DEFAULTS: RunVar[weakref.WeakKeyDictionary[Any, Runtime]] = RunVar("fastapi_offload_defaults")
_noted = False
# Set on the endpoints of an Offload's routers: an app that mounts the router of an
# Offload with a durable store but never ran its lifespan is told so (its requests would
# quietly keep their tasks in memory).
_MARK = "__fastapi_offload_runtime__"


class _NoApp:  # the key for a connection without an app (a bare ASGI test); weak-referable
    pass


_NO_APP = _NoApp()


def mark_routes(runtime: Runtime, routes: Any) -> None:
    """Tie an Offload's router endpoints to its runtime (see `_forgotten`)."""
    for route in routes:
        endpoint = getattr(route, "endpoint", None)
        if endpoint is not None:
            setattr(endpoint, _MARK, runtime)


def _forgotten(app: Any, preferred: Runtime | None) -> None:
    candidates: list[Any] = [preferred] if preferred is not None else []
    candidates += [getattr(getattr(r, "endpoint", None), _MARK, None) for r in app_routes(app)]
    for runtime in candidates:
        if isinstance(runtime, Runtime) and runtime.store.durable and not runtime.detached:
            raise ConfigError(
                f"an Offload with store={runtime.config.store!r} was created but its "
                "lifespan never ran, so this request would keep its tasks in memory only: "
                "use FastAPI(lifespan=offload.lifespan), or `async with "
                "offload.lifespan(app):` inside a lifespan of your own"
            )


def app_routes(app: Any, depth: int = 4) -> list[Any]:
    """The app's routes, with those of included routers (FastAPI >= 0.16x keeps an
    included router whole, as `original_router`) and mounts, a few levels deep."""
    found: list[Any] = []
    for route in getattr(app, "routes", None) or ():
        found.append(route)
        if depth > 0:
            for inner in (getattr(route, "original_router", None), getattr(route, "app", None)):
                if inner is not None and inner is not app:
                    found += app_routes(inner, depth - 1)
    return found


def runtime_for(conn: HTTPConnection, preferred: Runtime | None = None) -> Runtime:
    """`preferred` if a lifespan started it, else the runtime the app's lifespan
    started (shutting down included: its refusal is a 503), else the default one."""
    if preferred is not None and preferred.detached:
        return preferred
    state = conn.scope.get("state")
    found = state.get(RUNTIME_KEY) if isinstance(state, dict) else None
    if found is None and "app" in conn.scope:
        found = getattr(conn.app.state, RUNTIME_KEY, None)
    if isinstance(found, Runtime):
        return found
    app = conn.scope.get("app", _NO_APP)
    if preferred is not None and preferred.store.durable:
        _forgotten(app, preferred)  # its own router: cheap, and never a false alarm
    return _default_runtime(app)


def _default_runtime(app: Any) -> Runtime:
    global _noted
    try:
        defaults = _DEFAULTS.get()
    except LookupError:
        defaults = weakref.WeakKeyDictionary()
        _DEFAULTS.set(defaults)
    runtime = defaults.get(app)
    if runtime is None:
        config = OffloadConfig.resolve({})
        if config.durable_store:
            raise ConfigError(
                f"OFFLOAD_STORE={config.store!r} needs the Offload lifespan (it recovers "
                "unfinished tasks at start-up and renews their leases): use "
                "FastAPI(lifespan=offload.lifespan), or unset OFFLOAD_STORE"
            )
        _forgotten(app, None)  # once per app and loop: the app's routes are scanned
        runtime = Runtime(config, build_backend(config, None))
        if app is not _NO_APP:
            runtime.serve(app)
        runtime.attach()
        defaults[app] = runtime
        if started_on_this_loop():
            logger.warning(
                "an Offload is running on this event loop, but the requests of %r do not "
                "find it and use a default runtime instead (its options do not apply). "
                "Start it with FastAPI(lifespan=offload.lifespan), or inside your own "
                "lifespan with `async with offload.lifespan(app):`, passing the app.",
                app,
            )
        if not _noted:
            _noted = True
            logger.info(
                "no Offload lifespan found: using a default runtime (configured from "
                "OFFLOAD_* variables) that runs each request's tasks after its response, "
                "inside the request. Add FastAPI(lifespan=offload.lifespan) to detach them."
            )
            logger.info("%s", lane_sizes(runtime))  # its lanes multiply with --workers too
    return runtime
