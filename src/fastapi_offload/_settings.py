"""A task's settings, declared once: their names and types (`TaskOptions`, for PEP 692
`**kwargs: Unpack[...]` signatures), their checks, and the frozen value both the
decorators and `options()` produce (`TaskSettings`).

A new per-task setting is one field here (in `TaskOptions` or `CallOptions`, and in
`TaskSettings`), its check in `TaskSettings.__post_init__`, and its use where the task
runs; every signature that takes settings reads them from these `TypedDict`s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from ._checks import check_bool, check_int, check_lane, check_seconds
from ._errors import ConfigError
from ._names import closest
from ._owner import check_owner
from ._public import public

if TYPE_CHECKING:
    from ._models import TaskHandle

__all__ = [
    "MAX_AFTER",
    "MAX_KEY",
    "NO_SETTINGS",
    "CallOptions",
    "KindOptions",
    "LaneName",
    "TaskOptions",
    "TaskSettings",
    "after_ids",
]

LaneName = Literal["loop", "thread", "process", "remote"]

MAX_AFTER = 100  # tasks one task may follow
MAX_KEY = 200  # characters of an idempotency key: it is stored, and named in errors


class KindOptions(TypedDict, total=False):
    """Settings of `@cpu_bound(...)` and `@io_bound(...)`, whose name says the lane."""

    timeout: float
    retries: int
    retry_delay: float
    requeue: bool
    keep_result: bool
    retry_backoff: bool
    retry_on: type[BaseException] | tuple[type[BaseException], ...]


class TaskOptions(KindOptions, total=False):
    """Settings of `@task(...)`: where a task is defined."""

    lane: LaneName


class CallOptions(TaskOptions, total=False):
    """Settings of `tasks.options(...)` and `offload.options(...)`: one call only."""

    after: TaskHandle | str | Sequence[TaskHandle | str]
    owner: str | int
    key: str
    delay: float
    at: datetime


@public
@dataclass(frozen=True, slots=True)
class TaskSettings:
    """A task's settings as a decorator (`@task`, `@cpu_bound`, `@io_bound`) or
    `options()` declared them; `None`: not set there. Raises `ConfigError`, naming the
    setting, for a bad value."""

    lane: LaneName | None = None
    timeout: float | None = None
    retries: int | None = None
    retry_delay: float | None = None
    requeue: bool | None = None
    keep_result: bool | None = None
    retry_backoff: bool | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    after: tuple[str, ...] | None = None  # ids of the tasks it follows (per call only)
    owner: str | None = None  # who started it, as stored (per call only)
    key: str | None = None  # idempotency key (per call only)
    delay: float | None = None  # seconds from `add_task` to its start (per call only)
    at: datetime | None = None  # when it starts, an aware datetime (per call only)

    def __post_init__(self) -> None:
        if self.lane is not None:
            check_lane("lane", self.lane)
        if self.timeout is not None:
            check_seconds("timeout", self.timeout, minimum=0, exclusive=True)
        if self.retries is not None:
            check_int("retries", self.retries, minimum=0)
        if self.retry_delay is not None:
            check_seconds("retry_delay", self.retry_delay, minimum=0)
        for name in ("requeue", "keep_result", "retry_backoff"):
            if (value := getattr(self, name)) is not None:
                check_bool(name, value)
        object.__setattr__(self, "retry_on", _exception_types(self.retry_on))
        if self.owner is not None:
            object.__setattr__(self, "owner", check_owner(self.owner))
        if self.key is not None:
            check_key(self.key)
        if self.delay is not None:
            check_seconds("delay", self.delay, minimum=0)
        if self.at is not None:
            check_at(self.at)
            if self.delay is not None:
                raise ConfigError(
                    "options() got both delay= and at=: give one (delay=30 starts it in "
                    "30 seconds, at=datetime(..., tzinfo=UTC) at that moment)"
                )

    def due_at(self, now: float) -> float | None:
        """When a call made at `now` may start (epoch seconds); `None`: at once."""
        if self.delay is not None:
            return now + self.delay if self.delay > 0 else None
        if self.at is not None:
            return self.at.timestamp()
        return None

    @classmethod
    def of(
        cls, where: str, options: Mapping[str, Any], known: frozenset[str] | None = None
    ) -> TaskSettings:
        """The settings `where` (`"task"`, `"tasks.options"`...) was given, checked:
        a name that is not a setting there is a `ConfigError` naming the closest one."""
        allowed = CALL_NAMES if known is None else known
        for name in options:
            if name not in allowed:
                near = closest(name, allowed)
                hint = f"; did you mean {near}=?" if near else ""
                raise ConfigError(
                    f"{where}() got {name}=, which is not a task setting{hint} "
                    f"(the settings: {', '.join(sorted(allowed))})"
                )
        if "after" in options:
            options = {**options, "after": after_ids(options["after"])}
        return cls(**options)

    @classmethod
    def of_call(cls, where: str, options: Mapping[str, Any]) -> TaskSettings:
        """`of` for `options()`, which an endpoint calls on every request: settings seen
        before are checked once. Calls naming a per-call value (`after`, `owner`, `key`,
        `delay`, `at`: new on most calls) or an unhashable one are checked each time."""
        if not options:
            return NO_SETTINGS
        try:
            # The type too: `retries=True` equals `retries=1` but is refused.
            seen = tuple((name, type(value), value) for name, value in options.items())
            found = _SEEN.get(seen)
        except TypeError:  # an unhashable value (`retry_on=[...]`)
            return cls.of(where, options)
        if found is None:
            found = cls.of(where, options)
            if PER_CALL.isdisjoint(options):
                if len(_SEEN) >= _SEEN_MAX:  # bounded: settings built from request data
                    _SEEN.clear()
                _SEEN[seen] = found
        return found

    def merged(self, **changes: Any) -> TaskSettings:
        """These settings with `changes` applied (checked again)."""
        return dataclasses.replace(self, **changes)


#: Settings of one call only, each likely new on every call: never kept by `of_call`.
PER_CALL = frozenset({"after", "owner", "key", "delay", "at"})
_SEEN: dict[tuple[tuple[str, type, Any], ...], TaskSettings] = {}
_SEEN_MAX = 256

#: The names each signature accepts.
KIND_NAMES = frozenset(KindOptions.__annotations__)
TASK_NAMES = frozenset(TaskOptions.__annotations__) | KIND_NAMES
CALL_NAMES = frozenset(CallOptions.__annotations__) | TASK_NAMES


def after_ids(value: object) -> tuple[str, ...] | None:
    """`after=` as ids: a `TaskHandle`, an id, or a list of them."""
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else (value,)
    ids: list[str] = []
    for item in items:
        task_id = getattr(item, "id", item)
        if not isinstance(task_id, str) or not task_id:
            raise ConfigError(
                f"after={value!r}: give the handle add_task returned (or its id), or a "
                "list of them, e.g. tasks.options(after=first).add_task(second)"
            )
        ids.append(task_id)
    if len(ids) > MAX_AFTER:
        raise ConfigError(f"after= names {len(ids)} tasks; one task may follow {MAX_AFTER}")
    return tuple(ids)


def check_key(key: object) -> str:
    """An idempotency key: text of 1 to `MAX_KEY` printable characters."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY or not key.isprintable():
        raise ConfigError(
            f"key={key!r:.80} must be text of 1 to {MAX_KEY} printable characters, naming "
            'the request it deduplicates, e.g. key=f"receipt-{order_id}"'
        )
    return key


def check_at(at: object) -> datetime:
    """`at=`: an aware datetime (a naive one has no one moment it means)."""
    if not isinstance(at, datetime):
        raise ConfigError(
            f"at={at!r:.80} must be a datetime, e.g. datetime.now(UTC) + timedelta(hours=1)"
        )
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConfigError(
            f"at={at!r} is a naive datetime: give it a time zone (tzinfo=UTC), so every "
            "process reads the same moment"
        )
    if not math.isfinite(at.timestamp()):
        raise ConfigError(f"at={at!r} is not a moment")
    return at


def _exception_types(value: Any) -> tuple[type[BaseException], ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, type) else value  # `retry_on=OSError` alone
    if isinstance(items, tuple | list) and all(
        isinstance(item, type) and issubclass(item, BaseException) for item in items
    ):
        return tuple(items)
    raise ConfigError(
        f"retry_on={value!r} must be an exception type or a tuple of them, "
        "e.g. retry_on=(ConnectionError, TimeoutError)"
    )


NO_SETTINGS = TaskSettings()  # after the checks it runs
