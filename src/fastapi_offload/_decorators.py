"""Decorators that declare a callable's lane and defaults where it is defined."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, overload

from ._checks import LANES, check_bool, check_int, check_lane, check_seconds
from ._errors import ConfigError
from ._public import public
from ._saved_call import register

__all__ = ["LANES", "LaneName", "TaskDefaults", "cpu_bound", "declared", "io_bound", "task"]

LaneName = Literal["loop", "thread", "process", "remote"]

F = TypeVar("F", bound=Callable[..., Any])

# The declaration is stored on the function object itself and the function is returned
# unchanged: it still pickles by its qualified name (the process lane needs that) and
# calling it directly behaves exactly as before. No global registry.
_ATTRIBUTE = "__fastapi_offload__"


@public
@dataclass(frozen=True)
class TaskDefaults:
    """Settings attached to a callable by `task`, `cpu_bound` or `io_bound`."""

    lane: LaneName | None = None
    timeout: float | None = None
    retries: int | None = None
    retry_delay: float | None = None
    requeue: bool | None = None
    keep_result: bool | None = None
    retry_backoff: bool | None = None
    retry_on: tuple[type[BaseException], ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "retry_on", check_settings(self))


class _Settings(Protocol):
    @property
    def lane(self) -> str | None: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def retries(self) -> int | None: ...
    @property
    def retry_delay(self) -> float | None: ...
    @property
    def requeue(self) -> bool | None: ...
    @property
    def keep_result(self) -> bool | None: ...
    @property
    def retry_backoff(self) -> bool | None: ...
    @property
    def retry_on(self) -> Any: ...


def check_settings(settings: _Settings) -> tuple[type[BaseException], ...] | None:
    """Validate per-task settings (decorators and `tasks.options(...)`); return
    `retry_on` as a tuple (one exception type alone is accepted too)."""
    if settings.lane is not None:
        check_lane("lane", settings.lane)
    if settings.timeout is not None:
        check_seconds("timeout", settings.timeout, minimum=0, exclusive=True)
    if settings.retries is not None:
        check_int("retries", settings.retries, minimum=0)
    if settings.retry_delay is not None:
        check_seconds("retry_delay", settings.retry_delay, minimum=0)
    for name in ("requeue", "keep_result", "retry_backoff"):
        if (value := getattr(settings, name)) is not None:
            check_bool(name, value)
    return _exception_types(settings.retry_on)


def _exception_types(value: Any) -> tuple[type[BaseException], ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, type) else value
    if isinstance(items, tuple | list) and all(
        isinstance(item, type) and issubclass(item, BaseException) for item in items
    ):
        return tuple(items)
    raise ConfigError(
        f"retry_on={value!r} must be an exception type or a tuple of them, "
        "e.g. retry_on=(ConnectionError, TimeoutError)"
    )


def declared(func: Callable[..., Any]) -> TaskDefaults | None:
    """The settings a decorator attached to `func`, if any."""
    found = getattr(func, _ATTRIBUTE, None)
    return found if isinstance(found, TaskDefaults) else None


def _attach(func: F, defaults: TaskDefaults) -> F:
    if not callable(func):
        raise TypeError(f"{func!r} is not callable; decorate a function")
    try:
        setattr(func, _ATTRIBUTE, defaults)
    except (AttributeError, TypeError):
        raise TypeError(
            f"cannot attach task settings to {func!r} (a built-in or bound method?); "
            "decorate the plain function, or pass settings with tasks.options(...)"
        ) from None
    if defaults.requeue:
        register(func)  # the only functions a reclaimed row may name
    return func


@overload
def task(func: F, /) -> F: ...
@overload
def task(
    *,
    lane: LaneName | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    requeue: bool | None = None,
    keep_result: bool | None = None,
    retry_backoff: bool | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
) -> Callable[[F], F]: ...
def task(
    func: F | None = None,
    /,
    *,
    lane: LaneName | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    requeue: bool | None = None,
    keep_result: bool | None = None,
    retry_backoff: bool | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
) -> F | Callable[[F], F]:
    """Declare a callable's lane, timeout and retries where it is defined.

    Used bare (`@task`) or with settings (`@task(lane="process", timeout=30)`). The
    function is returned unchanged, so calling it directly still works. `requeue=True`
    declares it safe to run again: with a durable store, a task whose process died is
    run again by the process that reclaims it (at least once) instead of being marked
    `interrupted`. `keep_result=True` keeps its return value (JSON) in its status.
    `retry_on` retries only failures of these exception types (others fail at once);
    `retry_backoff=True` doubles the wait before each retry, from `retry_delay`, with
    jitter. Precedence:
    per-call `tasks.options(...)` > `Offload(routes=...)` > a configured remote
    backend > these settings > the kind of callable (`async def` -> loop, else thread).
    """
    defaults = TaskDefaults(
        lane, timeout, retries, retry_delay, requeue, keep_result, retry_backoff, _tuple(retry_on)
    )
    if func is not None:
        return _attach(func, defaults)
    return lambda f: _attach(f, defaults)


@overload
def cpu_bound(func: F, /) -> F: ...
@overload
def cpu_bound(
    *,
    timeout: float | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    requeue: bool | None = None,
    keep_result: bool | None = None,
    retry_backoff: bool | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
) -> Callable[[F], F]: ...
def cpu_bound(
    func: F | None = None,
    /,
    *,
    timeout: float | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    requeue: bool | None = None,
    keep_result: bool | None = None,
    retry_backoff: bool | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
) -> F | Callable[[F], F]:
    """Send this sync function to the process lane: it computes, and would hold the GIL.

    The function must be importable by its qualified name (defined at module level,
    not a lambda or closure) and its arguments and return value must pickle.
    """
    if func is not None:
        return _attach(func, TaskDefaults("process"))
    return task(
        lane="process",
        timeout=timeout,
        retries=retries,
        retry_delay=retry_delay,
        requeue=requeue,
        keep_result=keep_result,
        retry_backoff=retry_backoff,
        retry_on=retry_on,
    )


@overload
def io_bound(func: F, /) -> F: ...
@overload
def io_bound(
    *,
    timeout: float | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    requeue: bool | None = None,
    keep_result: bool | None = None,
    retry_backoff: bool | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
) -> Callable[[F], F]: ...
def io_bound(
    func: F | None = None,
    /,
    *,
    timeout: float | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    requeue: bool | None = None,
    keep_result: bool | None = None,
    retry_backoff: bool | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
) -> F | Callable[[F], F]:
    """Keep this sync function on the thread lane: it mostly waits (network, disk, sleep).

    This also silences the thread lane's CPU-bound advice for the function.
    """
    if func is not None:
        return _attach(func, TaskDefaults("thread"))
    return task(
        lane="thread",
        timeout=timeout,
        retries=retries,
        retry_delay=retry_delay,
        requeue=requeue,
        keep_result=keep_result,
        retry_backoff=retry_backoff,
        retry_on=retry_on,
    )


def _tuple(value: Any) -> Any:
    # One exception type alone is accepted: `retry_on=OSError`.
    return (value,) if isinstance(value, type) else value


for _decorator in (task, cpu_bound, io_bound):
    public(_decorator)
del _decorator
