"""Runs inside the anyio worker process: the trampoline for the process lane.

anyio sends only positional arguments, discards the worker's stdout/stderr and has no
hook for per-worker set-up. The trampoline adds keyword arguments, carries log records
back to the app, lowers the worker's CPU priority once, and measures CPU time. It never
returns the task's result or exception object (either may not pickle): only plain data.

It also isolates the call. A worker's fds 0 and 1 are anyio's command and result pipes,
so a child process or C code writing to fd 1 (or reading fd 0) would corrupt the pickle
protocol: they point at /dev/null during the call. Each worker leads its own process
group, so the processes a task starts can be killed with it; the worker writes its pid
into the lane's slot board (`lanes.process.board`) while the call runs, so the parent
knows whom to kill.

A worker dies with the web process that started it: on Linux the kernel kills it when
its parent goes (`PR_SET_PDEATHSIG`), elsewhere a thread checks the parent pid twice a
second. Without this, a worker whose server was `kill -9`ed runs its task to the end
(writing files, sending mails) for a task the store calls `interrupted`.

It must stay cheap to import: a new worker imports it before its first task.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..._context import TaskContext, bound
from ..._error_text import error_text, traceback_text
from ..._results import Kept, encode
from ..._retry import type_names
from .board import PID, SLOT, SlotContext, open_board
from .descendants import descendants, kill_all

__all__ = ["Outcome", "noop", "run"]

# (ok, error repr, error traceback text, log records as dicts, CPU seconds, the kept
# result (`_results.Kept`) or None, the error's type names (for `retry_on`), the last
# progress report (fraction, message) or None)
Outcome = tuple[
    bool,
    str | None,
    str | None,
    list[dict[str, Any]],
    float,
    Kept | None,
    tuple[str, ...],
    tuple[float, str | None] | None,
]

_priority_set: str | None = None
_handler: _Collect | None = None
_grouped = False
_guarded = False
PARENT_POLL = 0.5  # seconds between parent checks where PR_SET_PDEATHSIG is missing
_devnull = -1
_pipes = (-1, -1)

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


def _lead_group() -> None:
    # Once per worker. A task's children inherit the group, so the parent can kill them
    # all with the worker (`killpg`), even once the worker itself is dead.
    global _grouped
    if not _grouped:
        _grouped = True
        try:
            os.setpgid(0, 0)
        except (AttributeError, OSError):  # not POSIX, or a session leader: pid kill only
            pass


def _guard(parent: int) -> None:
    # Once per worker: die with `parent`, the web process. anyio starts workers from the
    # event loop's thread, and PR_SET_PDEATHSIG fires when that thread ends, which ends
    # anyio's workers anyway (they belong to that loop).
    global _guarded
    if _guarded or parent <= 0:
        return
    _guarded = True
    if not _set_parent_death_signal():
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was armed
        _die()


def _set_parent_death_signal() -> bool:
    if sys.platform != "linux":
        return False
    try:
        import ctypes  # here: only on Linux, once per worker

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    # The parent check where the kernel does not do it (macOS, BSD): a parent that died
    # leaves its children to another (init, a subreaper).
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    _die()


def _die() -> None:
    # The processes the task started go too: those in a session of their own (found
    # while this worker still lives), then the worker's group, itself included.
    kill_all(descendants(os.getpid()), signal.SIGKILL)
    if _grouped:
        try:
            os.killpg(os.getpid(), signal.SIGKILL)
        except OSError:
            pass
    os._exit(70)


def noop(priority: str, parent: int = 0) -> int:
    """Start-up / keep-warm call: sets the priority and reports the worker's pid.
    `parent`: the web process's pid; the worker dies with it."""
    _set_priority(priority)
    _lead_group()
    _guard(parent)
    return os.getpid()


def _isolate() -> None:
    global _devnull, _pipes
    if _devnull < 0:
        _devnull = os.open(os.devnull, os.O_RDWR)
        # Copies of anyio's pipes, taken once: the pipes stay the same for the worker's
        # life, and dup2 alone is half the cost of dup + dup2 + close on every call. The
        # copies are not inheritable (os.dup), so no child holds the pipes; dup2 makes
        # 0 and 1 inheritable, so a child gets /dev/null.
        _pipes = os.dup(0), os.dup(1)
        # fd 2 is a pipe too (anyio's default `stderr=PIPE`) that nobody reads: a task
        # (or an ffmpeg it runs) writing 64 KiB there would block forever. Nothing
        # anyio sends uses it, so it points at /dev/null for good.
        os.dup2(_devnull, 2)
    os.dup2(_devnull, 0)
    os.dup2(_devnull, 1)


def _restore() -> None:
    try:
        os.dup2(_pipes[0], 0)
        os.dup2(_pipes[1], 1)
    except OSError:
        # The task closed our copies of the pipes: the worker can no longer answer.
        # Dying now makes the parent report a crashed worker instead of waiting forever.
        os._exit(70)


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
    board_path: str,
    slot: int,
    task: tuple[str, str],
    result_limit: int,
    parent: int = 0,
) -> Outcome:
    """Call `func` in this worker; `slot` (-1: none) is this attempt's place on the board,
    `task` its (id, name); `result_limit` 0: its result is not kept; `parent`: the web
    process's pid, the worker dies with it."""
    _set_priority(priority)
    _lead_group()
    _guard(parent)
    board = open_board(board_path) if slot >= 0 else None
    context = SlotContext(task[0], task[1], board, slot)
    if board is not None:
        context.clear()
        PID.pack_into(board, slot * SLOT, os.getpid())
    handler = _collector(log_level)
    root = logging.getLogger()
    # Lowered only for the call, and only when needed: setting a logger's level clears
    # the level cache of every logger in the process.
    old_level = root.level
    if old_level > log_level:
        root.setLevel(log_level)
    cpu_start = time.process_time()
    try:
        # anyio's loop reads the next command from fd 0 and writes the answer to fd 1
        # only after `run` returns, so the pipes need to be back by then, not before.
        _isolate()
        try:
            with bound(context):
                value = func(*args, **kwargs)
        finally:
            _restore()
        # Encoded here: only text crosses back, and a value that does not pickle (or is
        # huge) never reaches the parent.
        kept = encode(value, result_limit) if result_limit else None
    except BaseException as exc:
        # Capped and masked here: a 10 MB message never crosses the pipe.
        error, tb = error_text(exc), traceback_text(exc)
        cpu = time.process_time() - cpu_start
        return False, error, tb, handler.records, cpu, None, type_names(exc), _last(context)
    finally:
        handler.active = False
        if root.level != old_level:
            root.setLevel(old_level)
        # Cleared only when the call returns: a pid left here tells the parent that the
        # worker died or was killed mid-call, and that its group must go too.
        if board is not None:
            PID.pack_into(board, slot * SLOT, 0)
    cpu = time.process_time() - cpu_start
    return True, None, None, handler.records, cpu, kept, (), _last(context)


def _last(context: TaskContext) -> tuple[float, str | None] | None:
    return None if context.fraction is None else (context.fraction, context.message)
