"""Server-Sent Events: the framing and the shape of a polled stream, shared by the status
router's `/tasks/{task_id}/events` and the dashboard's `/events`.

Written here rather than with FastAPI's `fastapi.sse`: that module came with FastAPI 0.135
and this package supports 0.121 on; it serves only a `yield` path operation, while both
endpoints here first answer some requests with a plain response (204, 404, 503); and its
keep-alive (`: ping` every 15 s) and field order would change what the streams send.

A client that leaves is noticed by Starlette's `StreamingResponse` (it listens for
`http.disconnect`, or a send fails under ASGI 2.4): it stops iterating, and the stream's
generator is closed, which runs its `on_close`. A stream also ends by itself after
`stream_max` seconds and the browser's EventSource reconnects: a server waiting for open
responses at shutdown (uvicorn without --timeout-graceful-shutdown) is never held by a
stream for longer.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from fastapi.responses import StreamingResponse

__all__ = ["KEEP_ALIVE", "STREAM_MAX", "Look", "encode", "event", "paced", "response"]

STREAM_MAX = 30.0  # seconds a stream lasts before the browser reconnects
KEEP_ALIVE = 10.0  # seconds of silence before a comment line keeps proxies from closing
RETRY = 1000  # milliseconds: a browser reconnects after a second, not its default 3
# What a poll returns: the event to send now (`None`: nothing changed), and the stream's
# last event (`None`: it goes on).
Look = Callable[[], Awaitable[tuple[str | None, str | None]]]


def encode(data: Any) -> str:
    """`data` as one line of compact JSON (an event's `data:` field)."""
    return json.dumps(data, separators=(",", ":"))


def event(name: str, data: str, *, event_id: str | None = None) -> str:
    """One event, framed; `data` is a single line (`encode`)."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {data}\n\n"


async def paced(
    look: Look,
    *,
    poll: float,
    stream_max: float,
    on_close: Callable[[], None] | None = None,
) -> AsyncGenerator[str, None]:
    """A polled stream: `look` every `poll` seconds, its events as they come, a comment
    after `KEEP_ALIVE` seconds of silence, until `look` gives a last event or
    `stream_max` seconds have passed. `on_close` runs however the stream ends (a client
    that left included)."""
    try:
        yield f"retry: {RETRY}\n\n"
        started = last_sent = time.monotonic()
        while True:
            text, last = await look()
            now = time.monotonic()
            if text is not None:
                last_sent = now
                yield text
            elif now - last_sent >= KEEP_ALIVE:
                last_sent = now
                yield ": keep-alive\n\n"
            if last is not None:
                yield last
                return
            if now - started >= stream_max:
                return  # the browser reconnects and gets the current state first
            await anyio.sleep(poll)
    finally:
        if on_close is not None:
            on_close()


def response(body: AsyncIterator[str]) -> StreamingResponse:
    """The streaming response of an event stream."""
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        # no-transform and X-Accel-Buffering: proxies (nginx) must not buffer it.
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )
