"""Which functions a saved call may name: those declared in this process with `@task`,
`cpu_bound` or `io_bound` (any of them, for a delayed call that never started), and those
declared `requeue=True` (for a call that may have started, run again). Filled at import
by the decorators; `_saved_call` looks names up here and never imports one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._saved_body import path_of

__all__ = ["declared", "register", "registered"]

# Functions declared `requeue=True`, by `module:qualname`: the only ones a reclaimed row
# that may have started may name. Filled at import by the decorators; a later declaration
# of the same name replaces the earlier one, so nothing needs resetting.
_REQUEUE: dict[str, Callable[..., Any]] = {}
# Every function declared with a decorator (`requeue=True` or not): the only ones a
# delayed call that never started may name.
_DECLARED: dict[str, Callable[..., Any]] = {}


def register(func: Callable[..., Any], *, requeue: bool = True) -> None:
    """Declare `func` runnable from a saved call: when it is delayed, and, with
    `requeue=True` (`@task(requeue=True)`), again after its process died."""
    path = path_of(func)
    _DECLARED[path] = func
    if requeue:
        _REQUEUE[path] = func
    else:
        _REQUEUE.pop(path, None)  # declared again without it: not run again any more


def registered(func: Callable[..., Any], *, requeue: bool = True) -> bool:
    found = (_REQUEUE if requeue else _DECLARED).get(path_of(func))
    return found is func


def declared(path: str, *, requeue: bool) -> Callable[..., Any] | None:
    """The function declared under `module:qualname` `path` (`requeue`: declared
    `requeue=True`), or `None`."""
    return (_REQUEUE if requeue else _DECLARED).get(path)
