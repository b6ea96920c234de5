"""Whether a call can travel to the process lane: checked in the request, by pickling
it once into nothing, and, only on failure, piece by piece to name what cannot."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import NotOffloadable
from .callables import unwrap

__all__ = ["check_picklable"]


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
        target = unwrap(func)
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
