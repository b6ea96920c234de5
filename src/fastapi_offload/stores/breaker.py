"""A circuit breaker for the durable stores: once the store fails, calls fail in
microseconds instead of each waiting out the store timeout, until a probe succeeds.

Without it, 60 status reads against a frozen Redis queue behind the store's four reader
threads and each waits for its own timeout: minutes in all. With it, the first failure
opens the breaker; while open, one call per `cooldown` is let through as a probe (the
half-open state), and its success closes the breaker again.

Used from the event loop and from the stores' threads: every method takes a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Breaker"]

logger = logging.getLogger("fastapi_offload")


class Breaker:
    """Closed (calls go through) or open since a failure (calls refused, one probe per
    `cooldown` seconds let through). `name` is what the log lines call the store."""

    def __init__(
        self, name: str, *, cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name, self.cooldown, self._clock = name, cooldown, clock
        self._lock = threading.Lock()
        self._error: str | None = None  # the last failure while open; None: closed
        self._next_probe = 0.0

    def __repr__(self) -> str:
        return f"Breaker({self.name!r}, {'open' if self._error else 'closed'})"

    @property
    def error(self) -> str | None:
        """Why the breaker is open (the last failure), or `None` when it is closed."""
        return self._error

    def blocked(self) -> bool:
        """Open, and no probe is due yet: the call would be refused (nothing is taken)."""
        with self._lock:
            return self._error is not None and self._clock() < self._next_probe

    def allow(self) -> bool:
        """Whether a call may go to the store now: always when closed; when open, once
        per `cooldown` (that call is the probe)."""
        with self._lock:
            if self._error is None:
                return True
            now = self._clock()
            if now < self._next_probe:
                return False
            self._next_probe = now + self.cooldown
            return True

    def succeeded(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            logger.warning("%s answers again (it had failed: %s)", self.name, error)

    def failed(self, error: str) -> None:
        """Open (or keep open) the breaker: calls are refused for `cooldown` seconds."""
        with self._lock:
            opened = self._error is None
            self._error = error
            self._next_probe = self._clock() + self.cooldown
        if opened:  # once per outage: the calls refused meanwhile are not logged
            logger.error(
                "%s failed: %s; its calls fail at once until it answers again (probed every %g s)",
                self.name,
                error,
                self.cooldown,
            )
