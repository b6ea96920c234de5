"""The dashboard router: a page at `{prefix}/`, its snapshot as JSON and as a Server-Sent
Events stream (a first snapshot, then patches), and an opt-in
`DELETE {prefix}/tasks/{task_id}` behind its cancel buttons.

The page is static (HTML, CSS and JS shipped in `assets/`, no CDN, no build
step); everything it shows comes from the snapshot of the runtime serving the request.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Sequence
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request, params
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..._checks import check_int
from ..._errors import ConfigError
from ...core.runtime import Runtime
from .. import sse
from ..lookup import runtime_for
from ..sse import STREAM_MAX
from ..status import TaskId, TaskStatus, cancel_response
from .feed import Feed
from .patch import Patches

__all__ = ["build_dashboard_router"]

POLL = 0.5  # seconds between two snapshots of a stream (sent only when they differ)
BUSY_RETRY = 5  # seconds a client refused for too many open streams waits (Retry-After)
ASSETS = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}
# The page runs only its own script and talks only to its own origin: even if a task
# name or error slipped past the script's escaping, no injected code would run.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def build_dashboard_router(
    runtime: Runtime,
    *,
    prefix: str,
    tags: list[str],
    dependencies: Sequence[params.Depends],
    cancel: bool,
    show_arguments: bool,
    max_streams: int,
    public: bool = False,
) -> APIRouter:
    """`Offload.dashboard_router`'s routes; closed by default (`ConfigError` without
    `dependencies`, unless `public`)."""
    if not dependencies and not public:
        raise ConfigError(
            "dashboard_router() shows every task's id, error and result to whoever "
            "reaches it"
            + (" and lets them cancel tasks" if cancel else "")
            + ": protect it with dependencies=[Depends(require_admin)] (your own "
            "check: HTTP basic, a session, a token), or pass public=True if only a "
            "private network can reach it"
        )
    check_int("max_streams", max_streams, minimum=1)
    router = APIRouter(prefix=prefix, tags=list(tags), dependencies=list(dependencies))
    # One feed per runtime served: this Offload's, or (no lifespan started it) the app's
    # default runtime, found at the first request. Weak keys: the feed, which the
    # runtime's ledger holds, holds no runtime, so neither keeps the other alive.
    feeds: weakref.WeakKeyDictionary[Runtime, Feed] = weakref.WeakKeyDictionary()

    def feed_for(found: Runtime) -> Feed:
        feed = feeds.get(found)
        if feed is None:
            feed = feeds[found] = Feed(show_arguments)
            found.ledger.add_observer(feed)
            feed.seed(found)
        return feed

    feed_for(runtime)  # from now on: tasks started before the page is opened are shown
    page = _asset("index.html")
    streams = _Streams(max_streams)
    patches = Patches()

    @router.get("/", response_class=Response, summary="The dashboard page")
    async def dashboard_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @router.get("/assets/{name}", response_class=Response, include_in_schema=False)
    async def dashboard_asset(name: str) -> Response:
        if name not in ASSETS:
            return Response(status_code=404)
        # Read once per request is cheap and keeps a reinstalled package's assets current.
        return Response(_asset(name), media_type=ASSETS[name], headers=PAGE_HEADERS)

    @router.get("/snapshot", summary="What the dashboard shows, as JSON")
    async def dashboard_snapshot(request: Request) -> JSONResponse:
        found = runtime_for(request, runtime)
        snapshot = await feed_for(found).snapshot(found, cancel=cancel)
        return JSONResponse(snapshot, headers={"Cache-Control": "no-store"})

    @router.get(
        "/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "A `snapshot` event (the dashboard's snapshot as JSON), "
                "then `patch` events with what changed, every 0.5 s at most",
            },
            503: {"description": "Too many open streams (`max_streams`); see Retry-After"},
        },
        summary="What the dashboard shows, live (Server-Sent Events)",
    )
    async def dashboard_events(request: Request) -> Response:
        found = runtime_for(request, runtime)  # first: it may raise, holding no slot
        slot = streams.take()
        if slot is None:
            # Each stream costs the loop a poll twice a second: past the bound, a client
            # (an open tab, a script) waits rather than slowing every request down.
            return JSONResponse(
                {
                    "detail": f"too many open dashboard streams (max_streams={max_streams}); "
                    f"retry in {BUSY_RETRY} s"
                },
                status_code=503,
                headers={"Retry-After": str(BUSY_RETRY)},
            )
        body = _events(found, feed_for(found), cancel, patches, slot)
        # An iterator never started (the client left first) runs no `finally`: its slot
        # is released when it is collected.
        weakref.finalize(body, slot.release)
        return sse.response(body)

    if cancel:

        @router.delete(
            "/tasks/{task_id}",
            response_model=TaskStatus,
            status_code=202,
            responses={
                404: {"model": TaskStatus, "description": "No task with this id is known"},
                409: {"model": TaskStatus, "description": "The task has already ended"},
            },
            summary="Cancel a task (the dashboard's cancel button)",
        )
        async def dashboard_cancel(task_id: TaskId, request: Request) -> JSONResponse:
            # DELETE, not POST: a form on another site cannot send it, and a cross-origin
            # script needs a CORS preflight first, so cached basic credentials are no
            # way in for another site.
            return await cancel_response(runtime_for(request, runtime), task_id)

    return router


def _asset(name: str) -> bytes:
    return files("fastapi_offload.web.dashboard").joinpath("assets", name).read_bytes()


class _Slot:
    __slots__ = ("_streams",)

    def __init__(self, streams: _Streams) -> None:
        self._streams: _Streams | None = streams

    def release(self) -> None:  # idempotent: the stream's end and its collection
        streams, self._streams = self._streams, None
        if streams is not None:
            streams.open -= 1


class _Streams:
    """Open event streams of one dashboard router (on the loop thread only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> _Slot | None:
        if self.open >= self.limit:
            return None
        self.open += 1
        return _Slot(self)


def _events(
    runtime: Runtime, feed: Feed, cancel: bool, patches: Patches, slot: _Slot
) -> AsyncIterator[str]:
    # Polled, like the status stream: progress and the other processes' tasks (a shared
    # store) change without a ledger event. The first event is the whole snapshot; then
    # only patches, each computed once for every stream at the same pace (`Patches`).
    shown: dict[str, Any] | None = None

    async def look() -> tuple[str | None, None]:
        nonlocal shown
        snapshot = await feed.snapshot(runtime, cancel=cancel)
        if shown is None:
            text: str | None = sse.event("snapshot", sse.encode(snapshot))
        else:
            text = None if snapshot is shown else patches.event(shown, snapshot)
        if text is not None:
            shown = snapshot
        return text, None  # never ends by itself: after STREAM_MAX, a reconnect

    return sse.paced(look, poll=POLL, stream_max=STREAM_MAX, on_close=slot.release)
