"""The retry policy: which failures are retried and how long to wait before each retry.

One module for every lane and both remote backends, so that `retry_backoff` and
`retry_on` mean the same thing wherever a task runs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BACKOFF_MAX", "RetryPolicy", "matches", "retry_wait", "type_names", "type_path"]

# Longest wait between two attempts with `retry_backoff` (Celery's default cap too).
BACKOFF_MAX = 600.0


def retry_wait(retry_delay: float, retry: int, backoff: bool) -> float:
    """Seconds to wait before retry number `retry` (1 for the first retry).

    Without backoff: `retry_delay` every time. With it: `retry_delay * 2**(retry - 1)`,
    capped at `BACKOFF_MAX`, then a random share of 50-100% of that (jitter: tasks that
    failed together, on a broker outage, do not all come back in the same instant).
    """
    if not backoff:
        return retry_delay
    full = min(BACKOFF_MAX, retry_delay * 2.0 ** min(retry - 1, 64))
    return full * random.uniform(0.5, 1.0)  # jitter, not cryptography


def type_path(cls: type[BaseException]) -> str:
    """`module.qualname` of an exception type, the name `retry_on` matches by."""
    return f"{cls.__module__}.{cls.__qualname__}"


def type_names(exc: BaseException) -> tuple[str, ...]:
    """The `type_path` of every class of `exc`'s type (its MRO), for matching remotely."""
    return tuple(type_path(cls) for cls in type(exc).__mro__ if issubclass(cls, BaseException))


def matches(retry_on: Iterable[str] | None, names: Iterable[str]) -> bool:
    """Whether a failure whose type (and bases) are `names` is retried under `retry_on`
    (`None`: every failure is)."""
    if retry_on is None:
        return True
    wanted = set(retry_on)
    return any(name in wanted for name in names)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A task's retries, asked the same way by the runner (every local lane), the test
    doubles and both remote workers: after a failed attempt, retry or not, and after
    how long. `retry_on`: the `type_path` names retried (`None`: every failure)."""

    retries: int = 0
    delay: float = 1.0
    backoff: bool = False
    retry_on: tuple[str, ...] | None = None

    def next_wait(self, attempts: int, names: Iterable[str]) -> float | None:
        """Seconds to wait before the next attempt, once attempt number `attempts` failed
        with a failure whose type (and bases) are `names`; `None`: give up."""
        if attempts > self.retries or not matches(self.retry_on, names):
            return None
        return retry_wait(self.delay, attempts, self.backoff)

    def waits(self) -> list[float]:
        """The wait before each retry, drawn now: for a queue that schedules every
        retry when the task is sent (RQ's `Retry(interval=[...])`)."""
        return [retry_wait(self.delay, n, self.backoff) for n in range(1, self.retries + 1)]
