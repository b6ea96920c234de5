"""What a callable is, as routing needs it: its name, whether it is `async def`, the
settings a decorator gave it (cached per function), and the refusal of a coroutine
object passed where its function belongs."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import FunctionType
from typing import Any

from .._decorators import declared
from .._errors import NotOffloadable
from .._settings import TaskSettings

__all__ = [
    "Profile",
    "Profiles",
    "callable_name",
    "is_async_callable",
    "refuse_coroutine",
    "unwrap",
]


def refuse_coroutine(func: object, method: str) -> None:
    """Raise `NotOffloadable` for a coroutine object given where its function belongs:
    `add_task(fetch_and_log(url))` instead of `add_task(fetch_and_log, url)`.

    The coroutine is closed, so Python does not also warn that it was never awaited.
    """
    if not inspect.iscoroutine(func):
        return
    code = func.cr_code
    name = getattr(func, "__name__", code.co_name)
    func.close()
    arguments = _parameters(code)
    shown = ", ".join((name, *arguments))
    raise NotOffloadable(
        f"{method}() was given a coroutine object, {name}(...), which has not run and "
        f"cannot be run later: pass the function and its arguments: {method}({shown}), "
        f"not {method}({name}({', '.join(arguments)}))"
    )


def _parameters(code: Any) -> list[str]:
    # The parameters as a call would pass them, from the coroutine's code object: its
    # arguments are in the frame, but their names say more than their values.
    positional, keyword = code.co_argcount, code.co_kwonlyargcount
    names = list(code.co_varnames)
    shown = [n for n in names[:positional] if n not in ("self", "cls")]
    shown += [f"{n}={n}" for n in names[positional : positional + keyword]]
    rest = positional + keyword
    if code.co_flags & inspect.CO_VARARGS:
        shown.append(f"*{names[rest]}")
        rest += 1
    if code.co_flags & inspect.CO_VARKEYWORDS:
        shown.append(f"**{names[rest]}")
    return shown


def unwrap(func: Any) -> Any:
    while isinstance(func, functools.partial):
        func = func.func
    return func


def callable_name(func: Callable[..., Any]) -> str:
    """`module.qualname` of a function (or of the class of a callable object)."""
    target = unwrap(func)
    if not (inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(target)):
        if not isinstance(target, type):
            target = type(target)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or repr(target)
    return f"{module}.{qualname}"


def is_async_callable(func: Any) -> bool:
    target = unwrap(func)
    return inspect.iscoroutinefunction(target) or (
        callable(target)
        and not isinstance(target, type)
        and inspect.iscoroutinefunction(getattr(target, "__call__", None))  # noqa: B004
    )


@dataclass(frozen=True, slots=True)
class Profile:
    """What routing needs to know about a callable, which does not change between calls."""

    name: str
    defaults: TaskSettings | None
    is_async: bool


class Profiles:
    """Profiles of plain functions, computed once: `add_task` is on every request's path.

    Partials, bound methods and callable objects are new objects on most calls, so
    they are profiled each time instead of filling the cache.
    """

    def __init__(self) -> None:
        # Weak keys: a closure made per request (and what it captured) is not kept alive.
        self._cache: weakref.WeakKeyDictionary[Callable[..., Any], Profile] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, func: Callable[..., Any]) -> Profile:
        plain = type(func) is FunctionType
        found = self._cache.get(func) if plain else None
        if found is None:
            found = Profile(callable_name(func), declared(func), is_async_callable(func))
            if plain:
                self._cache[func] = found
        return found
