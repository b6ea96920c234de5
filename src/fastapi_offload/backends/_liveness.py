"""Whether any worker serves a backend's queue, asked off the event loop and in bounded time.

Without a worker a task is accepted, reads `pending`, and nothing else ever happens; the
backends ask at start-up and log a WARNING that says what to start, and `workers()` lets a
dashboard show the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.to_thread

from .._remote_settings import safe_url

__all__ = ["count_within", "report_workers"]


async def count_within(
    count: Callable[[], int | None], limit: float, limiter: anyio.CapacityLimiter
) -> int | None:
    """`count()` run in a thread; `None` when it fails or has not answered within `limit` s.

    The thread is abandoned at the limit rather than waited for: a broker that accepts
    connections and never answers would otherwise hold start-up until its client gives
    up, which for kombu's retrying publish can be much later. It ends on its own, and
    its answer is dropped.
    """
    with anyio.move_on_after(limit):
        return await anyio.to_thread.run_sync(count, abandon_on_cancel=True, limiter=limiter)
    return None


def report_workers(
    logger: logging.Logger,
    count: int | None,
    *,
    backend: str,
    queue: str,
    url: str,
    command: str,
) -> None:
    """Log a WARNING when no worker serves `queue` (`count == 0`), naming the queue, the
    broker (password masked) and the command that starts one; INFO when it cannot tell."""
    where = f"the queue {queue!r} on {safe_url(url)}"
    if count == 0:
        logger.warning(
            "no %s worker is consuming %s: tasks sent there will stay pending until one "
            "is. Start one with: %s",
            backend,
            where,
            command,
        )
    elif count is None:
        logger.info("could not tell whether a %s worker is consuming %s", backend, where)
    else:
        logger.info("%d %s worker(s) consuming %s", count, backend, where)
