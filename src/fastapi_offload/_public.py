"""`public`: make a class or function defined in a private module report its public
module, so tracebacks, `repr`s and the API docs show `fastapi_offload.Offload`."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["public"]

T = TypeVar("T")


def public(obj: T, module: str = "fastapi_offload") -> T:
    obj.__module__ = module
    return obj
