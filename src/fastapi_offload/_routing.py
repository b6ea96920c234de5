"""Decide where a call runs, and check that it can travel there (inside the request)."""

from __future__ import annotations

import functools
import inspect
import pickle
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from ._declare import TaskDefaults
from ._errors import NotOffloadable

__all__ = ["callable_name", "choose_lane", "is_async_callable", "pickle_call"]


def _unwrap(func: Any) -> Any:
    while isinstance(func, functools.partial):
        func = func.func
    return func


def callable_name(func: Callable[..., Any]) -> str:
    """`module.qualname` of a function (or of the class of a callable object)."""
    target = _unwrap(func)
    if not (inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(target)):
        if not isinstance(target, type):
            target = type(target)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or repr(target)
    return f"{module}.{qualname}"


def is_async_callable(func: Any) -> bool:
    target = _unwrap(func)
    return inspect.iscoroutinefunction(target) or (
        callable(target)
        and not isinstance(target, type)
        and inspect.iscoroutinefunction(getattr(target, "__call__", None))  # noqa: B004
    )


def choose_lane(
    func: Callable[..., Any],
    name: str,
    *,
    option: str | None,
    routes: Mapping[str, str],
    remote: bool,
    defaults: TaskDefaults | None,
    promote: bool,
) -> str:
    """Per-call option > routing rule > configured backend > decorator > kind of callable."""
    if option is not None:
        return option
    for pattern, lane in routes.items():
        if fnmatchcase(name, pattern):
            return lane
    if remote:
        return "remote"
    if defaults is not None and defaults.lane is not None:
        return defaults.lane
    if is_async_callable(func):
        return "loop"
    return "process" if promote else "thread"


def pickle_call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str
) -> bytes:
    """Pickle a call for the process lane, or raise `NotOffloadable` naming the culprit."""
    try:
        return pickle.dumps((func, args, dict(kwargs)), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        whole = exc
    # Pickle once more piece by piece, only on failure, to name what cannot travel.
    try:
        pickle.dumps(func, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        target = _unwrap(func)
        qualname = getattr(target, "__qualname__", "")
        if getattr(target, "__name__", "") == "<lambda>" or "<locals>" in qualname:
            why = "it is a lambda or a function defined inside another function"
        else:
            why = f"it cannot be pickled ({exc})"
        raise NotOffloadable(
            f"cannot send {name} to the process lane: {why}. A worker process finds the "
            "function by its import path: define it at module level, or keep it on the "
            'thread lane with tasks.options(lane="thread").'
        ) from exc
    pieces = [(f"argument {i}", value) for i, value in enumerate(args)]
    pieces += [(f"argument {key!r}", value) for key, value in kwargs.items()]
    for label, value in pieces:
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: PERF203 - only on the failure path
            raise NotOffloadable(
                f"cannot send {name} to the process lane: {label} "
                f"({type(value).__name__}) cannot be pickled ({exc}). Pass data a worker "
                "process can rebuild (bytes, a path, an id) instead."
            ) from exc
    raise NotOffloadable(f"cannot send {name} to the process lane: {whole}") from whole
