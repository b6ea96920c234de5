"""Decide where a call runs, and check that it can run there (inside the request): the
lane, from the call's options, the routing rules, the backend, the decorator and the
kind of callable; then the record with every setting resolved."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from fnmatch import fnmatchcase
from typing import Any

from .._config import OffloadConfig
from .._errors import NotOffloadable
from .._models import TaskState
from .._record import TaskRecord
from .._retry import type_path
from .._settings import NO_SETTINGS, TaskSettings
from .callables import Profiles
from .travel import check_picklable

__all__ = ["build_record", "choose_lane"]


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
        key=options.key,
    )
    if options.delay is not None or options.at is not None:
        due_at = options.due_at(record.created_at)
        if due_at is not None and due_at > record.created_at:
            record.due_at, record.state = due_at, TaskState.SCHEDULED
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
