"""What a periodic task is (`@offload.every`, `@offload.cron`): a module-level function,
its schedule, its task settings and its policies, checked where it is declared; and the
registry of one runtime's periodic tasks (`PeriodicTasks`), which `core.periodic` runs.

Tick times are the same in every process, whatever its clock's phase: `every(seconds=N)`
ticks at the multiples of N seconds since the Unix epoch, a cron expression at its times
in UTC. That is what lets the processes sharing a store claim each tick once.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .._call_registry import register
from .._checks import check_bool, check_seconds
from .._errors import ConfigError, NotOffloadable
from .._extras import install_hint
from .._settings import TASK_NAMES, TaskSettings
from .callables import callable_name

__all__ = ["Cron", "Every", "PeriodicTask", "PeriodicTasks", "Schedule"]

F = TypeVar("F", bound=Callable[..., Any])


class Schedule(Protocol):
    """When a periodic task runs: its ticks, as epoch seconds."""

    text: str  # what `schedules()` and the dashboard show

    def latest(self, now: float) -> float:
        """The last tick at or before `now`."""
        ...

    def after(self, moment: float) -> float:
        """The first tick strictly after `moment`."""
        ...


class Every:
    """A tick every `seconds`, at the multiples of `seconds` since the epoch."""

    def __init__(self, seconds: float) -> None:
        check_seconds("every(seconds=...)", seconds, minimum=0, exclusive=True)
        self.seconds = float(seconds)
        self.text = f"every {_duration(self.seconds)}"

    def latest(self, now: float) -> float:
        # Ticks are k * seconds for a whole k, so that every process computes the same
        # floats; the division's rounding is corrected on both sides.
        k = math.floor(now / self.seconds)
        while (k + 1) * self.seconds <= now:
            k += 1
        while k * self.seconds > now:
            k -= 1
        return k * self.seconds

    def after(self, moment: float) -> float:
        return (round(self.latest(moment) / self.seconds) + 1) * self.seconds


class Cron:
    """The times of a cron expression (croniter's syntax, evaluated in UTC)."""

    def __init__(self, expression: str) -> None:
        croniter = _croniter()
        if not isinstance(expression, str):
            raise ConfigError(
                f"cron({expression!r}): give the expression as text, e.g. cron('*/5 * * * *')"
            )
        try:
            croniter(expression, 0.0).get_next(float)
        except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueErrors
            raise ConfigError(
                f"cron({expression!r}) is not a cron expression ({exc}); write five fields, "
                "minute hour day month weekday, e.g. '*/5 * * * *' (every 5 minutes) or "
                "'0 3 * * *' (03:00 UTC every day)"
            ) from None
        self._croniter = croniter
        self.expression = expression
        self.text = f"cron {expression} (UTC)"

    def latest(self, now: float) -> float:
        # croniter's get_prev is strictly before its start: a tick at `now` is checked.
        before = float(self._croniter(self.expression, now).get_prev(float))
        following = self.after(before)
        return following if following <= now else before

    def after(self, moment: float) -> float:
        return float(self._croniter(self.expression, moment).get_next(float))


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError as exc:
        raise ImportError(
            f"@offload.cron() reads cron expressions with croniter: {install_hint('cron')}"
        ) from exc
    return croniter


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


@dataclass(frozen=True, eq=False)
class PeriodicTask:
    """One periodic task: its function (called with no arguments at each tick) and
    what was declared with it."""

    func: Callable[..., Any]
    name: str  # module.qualname: the key of its ticks in the store, in every process
    schedule: Schedule
    settings: TaskSettings
    catch_up: bool
    overlap: bool


class PeriodicTasks:
    """The periodic tasks of one runtime, by name. Declared at import, before the
    runtime starts: one started later would run in no process that started before."""

    def __init__(self) -> None:
        self._tasks: dict[str, PeriodicTask] = {}
        self.running = False  # set by the scheduler while it runs

    def __iter__(self) -> Iterator[PeriodicTask]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def declare(
        self,
        where: str,
        schedule: Schedule,
        *,
        catch_up: bool,
        overlap: bool,
        settings: Mapping[str, Any],
    ) -> Callable[[F], F]:
        """The decorator of `@offload.every(...)` / `@offload.cron(...)`: `where` names it
        in errors. Settings and policies are checked here, the function when decorated."""
        checked = TaskSettings.of(where, settings, TASK_NAMES)
        check_bool("catch_up", catch_up)
        check_bool("overlap", overlap)

        def decorate(func: F) -> F:
            name = _module_level(func, where)
            if self.running:
                raise ConfigError(
                    f"@offload.{where}() on {name}: this Offload is running already; declare "
                    "periodic tasks at import, before the app starts, so that every process "
                    "has them"
                )
            if name in self._tasks:
                raise ConfigError(
                    f"{name} is a periodic task of this Offload already ("
                    f"{self._tasks[name].schedule.text}); give each function one schedule"
                )
            if checked.requeue:
                register(func)  # the only functions a reclaimed row may name
            self._tasks[name] = PeriodicTask(func, name, schedule, checked, catch_up, overlap)
            return func

        return decorate


def _module_level(func: Any, where: str) -> str:
    """The name of `func`, a module-level function callable with no arguments; else
    `NotOffloadable` saying why: every process finds a periodic task by that name."""
    example = (
        f"define it at module level: @offload.{where}(...) above `def cleanup() -> None:` "
        "in an imported module"
    )
    if not inspect.isfunction(func):
        raise NotOffloadable(
            f"@offload.{where}() decorates a module-level function; got {func!r:.100} "
            f"({type(func).__name__}): {example}"
        )
    name = callable_name(func)
    qualname = func.__qualname__
    if func.__name__ == "<lambda>":
        why = "is a lambda"
    elif "<locals>" in qualname:
        why = "is defined inside a function"
    elif "." in qualname:
        why = "is defined in a class (a method?)"
    else:
        why = None
    if why is not None:
        raise NotOffloadable(
            f"@offload.{where}() on {name}: it {why}, and every process must find a "
            f"periodic task by its module and name; {example}"
        )
    try:
        inspect.signature(func).bind()
    except TypeError:
        raise NotOffloadable(
            f"@offload.{where}() on {name}: a periodic task is called with no arguments, and "
            f"it takes {inspect.signature(func)}; give its parameters defaults, or read what "
            "it needs inside it"
        ) from None
    return name
