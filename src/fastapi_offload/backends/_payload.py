"""Request side: check, before anything is sent, that a call can travel to a remote worker.

The check runs inside `add_task` (through `Backend.prepare`), so a bad argument fails
the request that passed it, with its name, instead of failing later on a worker.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

from .._errors import NotOffloadable
from .._models import TaskCall
from .._remote_settings import Serializer
from ._registry import check_travelling_name

__all__ = ["Serializer", "check_call"]

"""How a remote backend encodes a task's arguments: `json` (the default: data only) or
`pickle` (`OFFLOAD_SERIALIZER=pickle` on both sides: any picklable value; only with a
broker nobody untrusted can write to)."""

# Containers deeper than this are almost certainly self-referencing or a mistake; the
# walk stops there rather than hitting the interpreter's recursion limit.
_MAX_DEPTH = 100
_JSON_HINT = (
    "Pass JSON values (str, int, float, bool, None, and lists / dicts with str keys "
    "of them), e.g. an id, a path or a URL instead of the object. If your workers trust "
    "everyone who can write to the broker, you may opt in to pickle "
    "(OFFLOAD_SERIALIZER=pickle)."
)


def check_call(call: TaskCall, *, backend: str, serializer: Serializer) -> None:
    """Raise `NotOffloadable` naming the first thing in `call` that cannot travel."""
    problem = check_travelling_name(call.name)
    if problem:
        raise NotOffloadable(f"{call.name} cannot be sent to the {backend} backend: {problem}")
    for label, base, value in _arguments(call):
        if serializer == "json":
            _check_json(call, backend, label, base, value)
        else:
            _check_pickle(call, backend, label, value)


def _arguments(call: TaskCall) -> Iterator[tuple[str, str, Any]]:
    for index, value in enumerate(call.args):
        yield f"positional argument {index}", f"args[{index}]", value
    for key, value in call.kwargs.items():
        yield f"argument {key!r}", f"kwargs[{key!r}]", value


def _check_json(call: TaskCall, backend: str, label: str, base: str, value: Any) -> None:
    found = _json_problem(value, base, 0, set())
    if found is None:
        return
    path, what = found
    raise NotOffloadable(
        f"{label} of {call.name} ({path}) {what}, so it cannot travel as JSON to the "
        f"{backend} backend. {_JSON_HINT}"
    )


def _json_problem(value: Any, path: str, depth: int, seen: set[int]) -> tuple[str, str] | None:
    # Exact JSON semantics: tuples travel (and arrive as lists); dict keys must be str,
    # because json.dumps would silently turn {1: ...} into {"1": ...} on the way.
    if value is None or isinstance(value, str | bool | int | float):
        return None
    if depth >= _MAX_DEPTH:
        return path, f"is nested more than {_MAX_DEPTH} levels deep"
    if isinstance(value, list | tuple | dict):
        if id(value) in seen:
            return path, "contains itself (a circular reference)"
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        return f"{path}[{key!r}]", f"has a non-str dict key {key!r}"
                    found = _json_problem(item, f"{path}[{key!r}]", depth + 1, seen)
                    if found:
                        return found
            else:
                for index, item in enumerate(value):
                    found = _json_problem(item, f"{path}[{index}]", depth + 1, seen)
                    if found:
                        return found
        finally:
            seen.discard(id(value))
        return None
    return path, f"is a {type(value).__module__}.{type(value).__qualname__}"


def _check_pickle(call: TaskCall, backend: str, label: str, value: Any) -> None:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise NotOffloadable(
            f"{label} of {call.name} cannot be pickled for the {backend} backend ({exc!r}). "
            "Pass a value that pickles (no open files, sockets, locks, lambdas), or an id "
            "the task can load it from."
        ) from None
