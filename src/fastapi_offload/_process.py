"""Runs inside the anyio worker process: the trampoline for the process lane.

anyio sends only positional arguments, discards the worker's stdout/stderr and has no
hook for per-worker set-up. The trampoline adds keyword arguments, carries log records
back to the app, lowers the worker's CPU priority once, and measures CPU time. It never
returns the task's result or exception object (either may not pickle): only plain data.
It must stay cheap to import: a new worker imports it before its first task.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = ["Outcome", "noop", "run"]

# (ok, error repr, error traceback text, log records as dicts, CPU seconds)
Outcome = tuple[bool, str | None, str | None, list[dict[str, Any]], float]

_priority_set: str | None = None
_handler: _Collect | None = None

# The LogRecord attributes that are plain data and survive pickling; `msg` is sent
# already formatted so the app does not need the arguments.
_RECORD_FIELDS = (
    "name",
    "levelno",
    "levelname",
    "pathname",
    "filename",
    "module",
    "lineno",
    "funcName",
    "created",
    "msecs",
    "relativeCreated",
    "process",
    "processName",
    "thread",
    "threadName",
    "stack_info",
)


class _Collect(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[dict[str, Any]] = []
        self.active = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.active:
            return
        data = {key: getattr(record, key, None) for key in _RECORD_FIELDS}
        data["msg"] = record.getMessage()
        data["args"] = None
        if record.exc_info:
            data["exc_text"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            data["exc_text"] = record.exc_text
        self.records.append(data)


def _set_priority(priority: str) -> None:
    global _priority_set
    if _priority_set == priority:
        return
    # Priority can only be lowered without privileges, so a worker keeps the first one.
    if _priority_set is None:
        try:
            if priority == "idle" and sys.platform == "linux":
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            elif priority in ("low", "idle") and hasattr(os, "nice"):
                os.nice(10 if priority == "low" else 19)
        except OSError:
            pass
    _priority_set = priority


def noop(priority: str) -> int:
    """Start-up / keep-warm call: sets the priority and reports the worker's pid."""
    _set_priority(priority)
    return os.getpid()


def _collector(log_level: int) -> _Collect:
    # Installed once per worker and reused: adding and removing it on every call costs
    # more than the call. It collects only while a task of ours runs (anyio's workers
    # are shared with the app's own `to_process` calls).
    global _handler
    if _handler is None:
        _handler = _Collect(log_level)
        logging.getLogger().addHandler(_handler)
    if _handler.level != log_level:
        _handler.setLevel(log_level)
    _handler.records = []
    _handler.active = True
    return _handler


def run(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    priority: str,
    log_level: int,
) -> Outcome:
    _set_priority(priority)
    handler = _collector(log_level)
    root = logging.getLogger()
    # Lowered only for the call, and only when needed: setting a logger's level clears
    # the level cache of every logger in the process.
    old_level = root.level
    if old_level > log_level:
        root.setLevel(log_level)
    cpu_start = time.process_time()
    try:
        func(*args, **kwargs)
    except BaseException as exc:
        tb = "".join(traceback.format_exception(exc)).rstrip()
        return False, repr(exc), tb, handler.records, time.process_time() - cpu_start
    finally:
        handler.active = False
        if root.level != old_level:
            root.setLevel(old_level)
    return True, None, None, handler.records, time.process_time() - cpu_start
