"""The routers an `Offload` makes: task status, the dashboard and the metrics, each
built by its module under `web/` around the runtime."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, params

from .core.runtime import Runtime
from .web.lookup import mark_routes

__all__ = ["OffloadRouters"]


class OffloadRouters:
    """`Offload`'s router methods (a base class of it, kept apart for their length)."""

    _runtime: Runtime  # set by `Offload.__init__`

    def status_router(
        self,
        *,
        prefix: str = "/tasks",
        tags: list[str] | None = None,
        cancel: bool = False,
        dependencies: Sequence[params.Depends] | None = None,
        cancel_dependencies: Sequence[params.Depends] | None = None,
        owner: params.Depends | None = None,
        public: bool = False,
    ) -> APIRouter:
        """An `APIRouter` with `GET {prefix}/{task_id}` (the task's status as JSON) and
        `GET {prefix}/{task_id}/events` (a Server-Sent Events stream of its changes).

        Mount it with `app.include_router(offload.status_router())`. An unknown id gets
        a 404 whose body still has `state: "unknown"`; while a durable store cannot be
        read, a 503 with `Retry-After` (never a 404), and the stream sends
        `store_unavailable` events instead of ending. `cancel=True` adds
        `DELETE {prefix}/{task_id}`, which cancels the task (202; 404 for an unknown
        id, 409 for one that has ended): protect it with `cancel_dependencies=[Depends(...)]`
        (that route only) or `dependencies=[...]` (every route), as for any FastAPI router.

        `owner=Depends(current_user_id)` serves each task only to the caller the
        dependency returns, when it equals the owner recorded with
        `tasks.options(owner=...)`; any other id, a task without an owner, and a caller
        `None` get the 404 of an unknown id, on every route. Without protection
        (`dependencies`, `owner`), a router that serves kept results (`keep_result`) or
        cancels logs a WARNING at creation: `public=True` says it is meant to be open.
        """
        from .web.status import build_status_router

        router = build_status_router(
            self._runtime,
            prefix=prefix,
            tags=tags or ["tasks"],
            cancel=cancel,
            dependencies=list(dependencies or ()),
            cancel_dependencies=list(cancel_dependencies or ()),
            owner=owner,
            public=public,
        )
        mark_routes(self._runtime, router.routes)  # a forgotten lifespan is then named
        return router

    def dashboard_router(
        self,
        *,
        prefix: str = "/offload",
        tags: list[str] | None = None,
        dependencies: Sequence[params.Depends] | None = None,
        public: bool = False,
        cancel: bool = False,
        show_arguments: bool = False,
        max_streams: int = 50,
    ) -> APIRouter:
        """An `APIRouter` serving a live dashboard page at `{prefix}/`: lanes, recent
        tasks with their progress and errors, loop-block reports, the CPU advisor's
        findings and process-worker crashes, updated through Server-Sent Events.

        Closed by default: it shows every task's id, error and the start of its result,
        so it needs `dependencies=[Depends(...)]` (HTTP basic, your auth), or
        `public=True` for a private network where anyone who reaches it may read it;
        without either it raises `ConfigError`. Task arguments are not shown unless
        `show_arguments=True`; `cancel=True` adds a cancel button (and its route, under
        the same dependencies). At most `max_streams` live feeds are served at once
        (process-wide per router): one more gets a 503 with `Retry-After`.
        """
        from .web.dashboard.router import build_dashboard_router

        router = build_dashboard_router(
            self._runtime,
            prefix=prefix,
            tags=tags or ["offload"],
            dependencies=list(dependencies or ()),
            cancel=cancel,
            show_arguments=show_arguments,
            max_streams=max_streams,
            public=public,
        )
        mark_routes(self._runtime, router.routes)
        return router

    def metrics_router(
        self,
        *,
        path: str = "/metrics",
        tags: list[str] | None = None,
        dependencies: Sequence[params.Depends] | None = None,
    ) -> APIRouter:
        """An `APIRouter` serving `GET {path}` in the Prometheus text format, metric names
        prefixed `fastapi_offload_` (the metrics page of the docs lists them)."""
        from .web.metrics.router import build_metrics_router

        return build_metrics_router(
            self._runtime,
            path=path,
            tags=tags or ["offload"],
            dependencies=list(dependencies or ()),
        )
