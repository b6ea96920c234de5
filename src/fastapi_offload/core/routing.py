"""Decide where a call runs, and check that it can travel there (inside the request)."""

from __future__ import annotations

import functools
import inspect
import os
import pickle
import threading
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import FunctionType
from typing import Any

from .._config import OffloadConfig
from .._decorators import declared
from .._errors import NotOffloadable
from .._record import TaskRecord
from .._retry import type_path
from .._settings import NO_SETTINGS, TaskSettings

__all__ = [
    "IdSource",
    "Profiles",
    "build_record",
    "callable_name",
    "check_picklable",
    "is_async_callable",
    "refuse_coroutine",
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
    is_async: bool,
    name: str,
    *,
    option: str | None,
    routes: Mapping[str, str],
    remote: bool,
    defaults: TaskSettings | None,
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
    if is_async:
        return "loop"
    return "process" if promote else "thread"


class _Discard:
    """A file that drops what is written: validation pays for pickling, not for copies
    (with protocol 5, a large bytes argument is written straight through, uncopied)."""

    def write(self, data: Any) -> int:
        return len(data)


def check_picklable(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str
) -> None:
    """Check that a call can travel to the process lane, or raise `NotOffloadable`.

    The call is pickled for real only once, by anyio, when it runs: a second copy here
    would double the cost for large arguments.
    """
    try:
        pickle.Pickler(_Discard(), protocol=pickle.HIGHEST_PROTOCOL).dump((func, args, kwargs))
        return
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


class IdSource:
    """Task ids: 128 random bits as 32 hex digits, like `uuid4().hex`, unguessable.

    Random bytes are read from the OS in batches (one `os.urandom` per id costs a
    system call, ~8 us); a forked child reads a fresh batch so no id repeats.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0
        self._pid = 0

    def __call__(self) -> str:
        with self._lock:
            if self._offset >= len(self._buffer) or self._pid != os.getpid():
                self._buffer, self._offset, self._pid = os.urandom(16 * 256), 0, os.getpid()
            start = self._offset
            self._offset += 16
        return self._buffer[start : start + 16].hex()


def build_record(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: TaskSettings,
    config: OffloadConfig,
    *,
    remote: bool,
    cpu_bound: Collection[str],
    profiles: Profiles,
    new_id: Callable[[], str],
) -> TaskRecord:
    """Route one call and check it can run in its lane; raise `NotOffloadable` if not."""
    if not callable(func):
        raise NotOffloadable(
            f"add_task() takes a callable first; got {func!r} ({type(func).__name__})"
        )
    profile = profiles(func)
    name, defaults = profile.name, profile.defaults
    promote = config.auto_promote and name in cpu_bound

    def lane_for(promote: bool) -> str:
        return choose_lane(
            profile.is_async,
            name,
            option=options.lane,
            routes=config.routes,
            remote=remote,
            defaults=defaults,
            promote=promote,
        )

    lane = lane_for(promote)
    # Each setting: the call's, else the decorator's, else the default. Plain
    # conditionals: this runs for every task (a helper call each costs ~0.1 us, a
    # generator ~1 us).
    d = defaults if defaults is not None else NO_SETTINGS
    timeout = options.timeout if options.timeout is not None else d.timeout
    retries = options.retries if options.retries is not None else d.retries
    delay = options.retry_delay if options.retry_delay is not None else d.retry_delay
    requeue = options.requeue if options.requeue is not None else d.requeue
    keep = options.keep_result if options.keep_result is not None else d.keep_result
    backoff = options.retry_backoff if options.retry_backoff is not None else d.retry_backoff
    retry_on = options.retry_on if options.retry_on is not None else d.retry_on
    record = TaskRecord(
        id=new_id(),
        name=name,
        lane=lane,
        func=func,
        args=args,
        kwargs=kwargs,
        timeout=config.timeout if timeout is None else timeout,
        retries=0 if retries is None else retries,
        retry_delay=1.0 if delay is None else delay,
        requeue=requeue is True,
        declared=defaults is not None,
        keep_result=config.keep_result if keep is None else keep,
        retry_backoff=backoff is True,
        retry_on=None if retry_on is None else _retry_names(retry_on),
        after=options.after or (),
        owner=options.owner,  # checked text (`TaskSettings`)
    )
    if lane == "remote":
        if record.after:
            raise NotOffloadable(
                f"{name}: after= orders tasks of the local lanes; a remote backend runs "
                "its tasks itself (chain them there, or run this one locally)"
            )
        return record
    is_async = profile.is_async
    if lane == "loop" and not is_async:
        raise NotOffloadable(
            f"{name} is a sync function: the loop lane runs `async def` callables only "
            "(a sync call there would block the loop). Use the thread or process lane."
        )
    if lane in ("thread", "process") and is_async:
        raise NotOffloadable(
            f"{name} is an `async def` callable: it runs on the loop lane. "
            f"Remove lane={lane!r}, or make it a sync function."
        )
    if lane == "process":
        try:
            check_picklable(func, args, kwargs, name)
        except NotOffloadable:
            # Promotion was our idea, not the user's: a call that cannot travel stays
            # on the thread lane instead of failing.
            unpromoted = lane_for(False)
            if unpromoted != "thread":
                raise
            record.lane = "thread"
    return record


def _retry_names(types: tuple[type[BaseException], ...]) -> tuple[str, ...]:
    return tuple(type_path(cls) for cls in types)
