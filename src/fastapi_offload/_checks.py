"""Validation shared by `Offload(...)` options and per-task settings: one wording for
every bad value, a `ConfigError` naming the option, never a raw `TypeError`."""

from __future__ import annotations

import math
from typing import Any

from ._errors import ConfigError

__all__ = ["LANES", "check_bool", "check_int", "check_lane", "check_seconds"]

LANES: tuple[str, ...] = ("loop", "thread", "process", "remote")


def check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be a whole number, {minimum} or more")


def check_seconds(name: str, value: Any, *, minimum: float, exclusive: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > minimum if exclusive else value >= minimum):
        return
    bound = f"above {minimum:g}" if exclusive else f"{minimum:g} or more"
    raise ConfigError(f"{name}={value!r} must be a number of seconds, {bound}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be True or False")


def check_lane(name: str, value: Any) -> None:
    if value not in LANES:
        raise ConfigError(f"{name}={value!r} is not a lane; use one of {', '.join(LANES)}")
