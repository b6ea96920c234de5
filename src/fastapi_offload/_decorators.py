"""Decorators that declare a callable's lane and defaults where it is defined."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from typing_extensions import Unpack

from ._call_registry import register
from ._checks import LANES
from ._public import public
from ._settings import KIND_NAMES, TASK_NAMES, KindOptions, LaneName, TaskOptions, TaskSettings

__all__ = ["LANES", "LaneName", "TaskDefaults", "cpu_bound", "declared", "io_bound", "task"]

F = TypeVar("F", bound=Callable[..., Any])

# The declaration is stored on the function object itself and the function is returned
# unchanged: it still pickles by its qualified name (the process lane needs that) and
# calling it directly behaves exactly as before. No global registry.
_ATTRIBUTE = "__fastapi_offload__"


#: The settings a decorator attached (the name the API reference has always shown).
TaskDefaults = TaskSettings


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
    # The only functions a reclaimed row may name: a delayed call any of them, a call
    # run again after a crash those declared requeue=True.
    register(func, requeue=defaults.requeue is True)
    return func


@overload
def task(func: F, /) -> F: ...
@overload
def task(**settings: Unpack[TaskOptions]) -> Callable[[F], F]: ...
def task(func: F | None = None, /, **settings: Unpack[TaskOptions]) -> F | Callable[[F], F]:
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
    return _declare(func, TaskSettings.of("task", settings, TASK_NAMES))


@overload
def cpu_bound(func: F, /) -> F: ...
@overload
def cpu_bound(**settings: Unpack[KindOptions]) -> Callable[[F], F]: ...
def cpu_bound(func: F | None = None, /, **settings: Unpack[KindOptions]) -> F | Callable[[F], F]:
    """Send this sync function to the process lane: it computes, and would hold the GIL.

    The function must be importable by its qualified name (defined at module level,
    not a lambda or closure) and its arguments and return value must pickle. Takes the
    settings of `task`, except `lane`.
    """
    checked = TaskSettings.of("cpu_bound", settings, KIND_NAMES)
    return _declare(func, checked.merged(lane="process"))


@overload
def io_bound(func: F, /) -> F: ...
@overload
def io_bound(**settings: Unpack[KindOptions]) -> Callable[[F], F]: ...
def io_bound(func: F | None = None, /, **settings: Unpack[KindOptions]) -> F | Callable[[F], F]:
    """Keep this sync function on the thread lane: it mostly waits (network, disk, sleep).

    This also silences the thread lane's CPU-bound advice for the function. Takes the
    settings of `task`, except `lane`.
    """
    checked = TaskSettings.of("io_bound", settings, KIND_NAMES)
    return _declare(func, checked.merged(lane="thread"))


def _declare(func: F | None, settings: TaskSettings) -> F | Callable[[F], F]:
    if func is not None:
        return _attach(func, settings)
    return lambda f: _attach(f, settings)


for _decorator in (task, cpu_bound, io_bound):
    public(_decorator)
del _decorator
