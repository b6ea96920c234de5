"""The body of a saved call, which `_saved_call` signs and checks: a JSON header naming the
function (`module:qualname`) with the task's settings, and its arguments, inside the header
when they are plain JSON data, else pickled after it on the next line; and the `Call` read
back from a body whose signature was checked.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import NotOffloadable

__all__ = ["Call", "decode", "encode", "path_of"]

_DEPTH = 64  # nesting that still counts as plain JSON data


def path_of(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', '?')}"


@dataclass(frozen=True, slots=True)
class Call:
    """A saved call, loaded and checked."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    lane: str
    timeout: float | None
    retries: int
    retry_delay: float
    keep_result: bool
    retry_backoff: bool
    retry_on: tuple[str, ...] | None
    after: tuple[str, ...] = ()
    owner: str | None = None
    requeue: bool = True  # calls saved before delayed tasks were all requeue=True
    due_at: float | None = None


def encode(
    header: Mapping[str, Any],
    args: Any,
    kwargs: Any,
    *,
    why: str,
    delayed: bool,
) -> bytes:
    """The body of a call: `header` (the function's name under `func`, and the settings),
    with `args` and `kwargs` in it when JSON gives them back exactly, else pickled after
    it. Raises `NotOffloadable` for arguments that cannot be pickled, saying `why` the
    call is saved."""
    if _plain([list(args), kwargs], _DEPTH):
        return _json({**header, "args": list(args), "kwargs": kwargs})
    try:
        pickled = pickle.dumps((tuple(args), dict(kwargs)), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise NotOffloadable(
            f"{header['func']} {why} (a durable store), but its arguments cannot be pickled "
            f"({exc}). Pass picklable arguments (plain JSON data is best)"
            + ("." if delayed else ", or drop requeue=True.")
        ) from exc
    return _json({**header, "pickled": True}) + b"\n" + pickled


def decode(header: Mapping[str, Any], pickled: bytes, func: Callable[..., Any]) -> Call:
    """The call of a body whose signature was checked: its `header` (parsed) and what
    follows it (`pickled`), for `func`, the declared function the header names. Only a
    signed body may come here: its pickle is loaded. A header that lacks a setting or
    holds a wrong type raises (`KeyError`, `TypeError`, `ValueError`)."""
    if header.get("pickled"):
        # Signed with our key, so written by a process of this app.
        args, kwargs = pickle.loads(pickled)
    else:
        args, kwargs = header["args"], header["kwargs"]
    retry_on = header["retry_on"]
    return Call(
        func=func,
        args=tuple(args),
        kwargs=dict(kwargs),
        lane=str(header["lane"]),
        timeout=None if header["timeout"] is None else float(header["timeout"]),
        retries=int(header["retries"]),
        retry_delay=float(header["retry_delay"]),
        keep_result=bool(header["keep_result"]),
        retry_backoff=bool(header["retry_backoff"]),
        retry_on=None if retry_on is None else tuple(str(name) for name in retry_on),
        after=tuple(str(task_id) for task_id in header.get("after", ())),
        owner=None if header.get("owner") is None else str(header["owner"]),
        requeue=bool(header.get("requeue", True)),
        due_at=None if header.get("due_at") is None else float(header["due_at"]),
    )


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _plain(value: Any, depth: int) -> bool:
    """Whether JSON gives back exactly `value` (same types, not just equal values)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return value == value and value not in (float("inf"), float("-inf"))
    if depth <= 0:
        return False
    if kind is list:
        return all(_plain(item, depth - 1) for item in value)
    if kind is dict:
        return all(type(key) is str and _plain(item, depth - 1) for key, item in value.items())
    return False
