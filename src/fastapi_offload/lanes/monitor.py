"""Loop-block detection for `async def` tasks.

Each step of a task's coroutine (the code between two awaits) is timed by driving the
coroutine ourselves: this names the culprit and works on asyncio and uvloop alike
(patching `asyncio.Handle._run` sees nothing under uvloop). While a step runs, a
watchdog thread checks whether it is late and, only then, samples the loop thread's
stack, so the report can show where the loop was stuck, not only where it resumed.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from types import FrameType
from typing import Any, Generic, TypeVar

__all__ = ["LoopBlock", "LoopMonitor"]

logger = logging.getLogger("fastapi_offload.monitor")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoopBlock:
    """One report: the task, how long its step held the loop, where the step ended, and
    the loop thread's stack sampled meanwhile (`None`: no watchdog, or it was too late)."""

    name: str
    task_id: str
    seconds: float
    where: str
    stack: str | None
    at: float  # `time.time()` of the report


class LoopMonitor:
    KEPT = 20  # recent reports kept for the dashboard; the log has them all
    IDLE = 2.0  # seconds without a step after which the watchdog leaves

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.blocks = 0
        self.longest = 0.0
        self.recent: deque[LoopBlock] = deque(maxlen=self.KEPT)
        # (start time, step id) of the step running now, written by the loop thread and
        # read by the watchdog; a tuple swap is atomic under the GIL.
        self._current: tuple[float, int] | None = None
        self._step = 0
        self._sampled: tuple[int, str] | None = None
        self._loop_thread = 0
        self._stop = threading.Event()
        # The watchdog runs only while loop-lane steps run: a thread that wakes 20 times a
        # second cost a busy server ~4 us of CPU per request, tasks or not (in process, a
        # BackgroundTasks endpoint with the lifespan running: 44-45 us against 40-41
        # without it), so the first step after `start` starts it, and it leaves once no
        # step has run for `IDLE` seconds.
        self._armed = False  # `start` was called (a lifespan runs this monitor)
        self._watchdog: threading.Thread | None = None
        self._lock = threading.Lock()  # starting and leaving of the watchdog

    def start(self) -> None:
        """Sample the loop thread's stack while a step is late, from now on: the watchdog
        starts with the first step. Called on the loop's thread."""
        if self.threshold <= 0:
            return
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._armed = True

    @property
    def watching(self) -> bool:
        """Whether the watchdog thread runs now (it runs only while steps run)."""
        watchdog = self._watchdog
        return watchdog is not None and watchdog.is_alive()

    def stop(self) -> None:
        self._armed = False
        self._stop.set()
        with self._lock:
            watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.join(timeout=1)

    def _wake(self) -> None:
        # From a step's start, when no watchdog runs (`_Timed`): rare, so a lock is fine.
        with self._lock:
            if self._watchdog is not None or not self._armed:
                return
            self._watchdog = threading.Thread(
                target=self._watch, name="fastapi-offload-watchdog", daemon=True
            )
            self._watchdog.start()

    def _watch(self) -> None:
        interval = max(self.threshold / 2, 0.005)
        seen, quiet = self._step, 0.0
        while not self._stop.wait(interval):
            current = self._current
            if current is None and self._step == seen:
                quiet += interval
                if quiet >= self.IDLE:
                    with self._lock:
                        # A step that started since is seen next time (`_step` moved);
                        # one that starts after this is the next watchdog's.
                        if self._step == seen and self._current is None:
                            self._watchdog = None
                            return
                continue
            seen, quiet = self._step, 0.0
            if current is None or time.perf_counter() - current[0] < self.threshold:
                continue
            if self._sampled is not None and self._sampled[0] == current[1]:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is not None:
                entries = traceback.extract_stack(frame)
                # Keep the task's own frames: those below our step driver.
                cut = max((i for i, e in enumerate(entries) if e.filename == __file__), default=-1)
                stack = "".join(traceback.format_list(entries[cut + 1 :][-12:]))
                self._sampled = (current[1], stack)

    def timed(self, coro: Coroutine[Any, Any, T], name: str, task_id: str) -> _Timed[T]:
        return _Timed(coro, self, name, task_id)

    def _report(self, elapsed: float, step: int, name: str, task_id: str, where: str) -> None:
        self.blocks += 1
        self.longest = max(self.longest, elapsed)
        sampled = self._sampled
        stack = sampled[1] if sampled is not None and sampled[0] == step else None
        self.recent.append(LoopBlock(name, task_id, elapsed, where, stack, time.time()))
        logger.warning(
            "task %s (id %s) held the event loop for %.0f ms in one step, which ended at %s. "
            "Every request waited meanwhile. Move the blocking part out of the coroutine: "
            "`await anyio.to_thread.run_sync(...)` for blocking I/O, or make it a sync "
            "function decorated with @cpu_bound for CPU work.%s",
            name,
            task_id,
            elapsed * 1000,
            where,
            f"\nStack while the loop was blocked:\n{stack.rstrip()}" if stack else "",
        )


_FRAMEWORK = (
    f"{os.sep}asyncio{os.sep}",
    f"{os.sep}anyio{os.sep}",
    f"{os.sep}fastapi_offload{os.sep}",
)


def _where(coro: Any) -> str:
    # The innermost frame of the task's own code that the coroutine is suspended in:
    # the await right after the blocking code.
    frame: FrameType | None = None
    while coro is not None:
        candidate = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if candidate is not None and not any(
            part in candidate.f_code.co_filename for part in _FRAMEWORK
        ):
            frame = candidate
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if frame is None:
        return "the task's end"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


class _Timed(Generic[T]):
    """Awaitable that drives `coro` step by step and times each step."""

    __slots__ = ("_coro", "_monitor", "_name", "_task_id")

    def __init__(self, coro: Coroutine[Any, Any, T], monitor: LoopMonitor, name: str, task_id: str):
        self._coro = coro
        self._monitor = monitor
        self._name = name
        self._task_id = task_id

    def __await__(self) -> Generator[Any, Any, T]:
        coro, monitor = self._coro, self._monitor
        clock = time.perf_counter
        value: Any = None
        error: BaseException | None = None
        while True:
            if monitor._watchdog is None and monitor._armed:
                monitor._wake()  # the first step after a quiet spell
            monitor._step += 1
            step = monitor._step
            start = clock()
            monitor._current = (start, step)
            try:
                if error is None:
                    yielded = coro.send(value)
                else:
                    yielded, error = coro.throw(error), None
            except StopIteration as stop:
                self._check(clock() - start, step, None)
                return stop.value  # type: ignore[no-any-return]  # the coroutine's result
            except BaseException:
                self._check(clock() - start, step, None)
                raise
            finally:
                monitor._current = None
            self._check(clock() - start, step, coro)
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                error, value = exc, None

    def _check(self, elapsed: float, step: int, coro: Any) -> None:
        if elapsed > self._monitor.threshold > 0:
            self._monitor._report(elapsed, step, self._name, self._task_id, _where(coro))
