"""The thread lane's bound: a slot whose thread was abandoned stays taken.

A thread cannot be killed. When a thread task times out (or is abandoned at shutdown)
the runner moves on, but the thread keeps running the function; if its slot were freed,
the next task would start a new thread beside it, and a lane of `thread_workers=16`
under a stream of slow timed-out calls grew to ~200 OS threads. Here the slot is held
for the thread until it really returns, so at most `capacity` threads run the lane's
functions at once, and `abandoned` counts those that run on after their task ended.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from types import TracebackType

__all__ = ["Call", "ThreadSlots"]


class Call:
    """One attempt's thread: whether it started and returned, and whether its slot was
    handed to it. Every step is under a lock: the attempt may give up at any point of
    the thread's life, and exactly one of them releases the slot."""

    __slots__ = ("_lock", "_release", "given_up", "returned", "started")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = self.returned = self.given_up = False
        self._release: tuple[asyncio.AbstractEventLoop, object, ThreadSlots] | None = None

    def begin(self) -> bool:
        """In the worker thread, before the function: `False` if the attempt gave up
        before the thread got to it (the function must not run: nobody waits for it,
        and its slot is free again)."""
        with self._lock:
            self.started = not self.given_up
            return self.started

    def thread_returned(self) -> None:
        """In the worker thread, when the function returned or raised."""
        with self._lock:
            self.returned = True
            release, self._release = self._release, None
        if release is not None:
            loop, borrower, slots = release
            try:  # the limiter is the loop's: release it there
                loop.call_soon_threadsafe(slots.thread_ended, borrower)
            except RuntimeError:  # that loop is closed: nothing waits for the slot
                pass

    def abandon(self, slots: ThreadSlots, borrower: object) -> bool:
        """On the loop, when the attempt stopped waiting for its thread: hand the slot to
        the thread (`True`), unless the thread has returned already (`False`)."""
        with self._lock:
            if self.returned:
                return False
            if not self.started:
                # The call is still queued: the thread that takes it up finds `begin`
                # refusing it, so the slot is free now.
                self.given_up = True
                return False
            self._release = (asyncio.get_running_loop(), borrower, slots)
            return True


class ThreadSlots:
    """`async with slots:` as with a `CapacityLimiter`; `keep_for(call)` inside it, when
    the attempt gives up on a thread still running, keeps the slot until it returns.

    Its own and not an anyio `CapacityLimiter`: a free slot is taken without yielding to
    the loop (the limiter's two checkpoints were two loop iterations per task, a third
    of what the runner costs a no-op thread task); a taken one is waited for in order.
    asyncio only, as the runner is.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        # Attempts waiting for a slot, first come first served; a cancelled one stays
        # until a release skips it.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._held: dict[asyncio.Task[object] | None, object] = {}
        self._kept: set[object] = set()
        self.abandoned = 0  # threads running on after their task ended (loop thread only)

    @property
    def taken(self) -> int:
        """Slots held now: by attempts, and by abandoned threads."""
        return self.capacity - self._free

    async def __aenter__(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed a slot as it was cancelled: pass it on
                raise
        # A borrower of our own per attempt (not the asyncio task): the slot may outlive
        # the attempt, and the same task may take a slot again for its retry.
        self._held[asyncio.current_task()] = object()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        borrower = self._held.pop(asyncio.current_task())
        if borrower in self._kept:
            return  # the abandoned thread holds it now
        self._release()

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # not cancelled while it waited
                waiter.set_result(None)  # the slot goes to it, as it is
                return
        self._free += 1

    def keep_for(self, call: Call) -> None:
        """Called by the attempt that holds a slot, when it stops waiting for `call`'s
        thread: the slot stays taken until the thread returns."""
        borrower = self._held.get(asyncio.current_task())
        if borrower is None or not call.abandon(self, borrower):
            return
        self._kept.add(borrower)
        self.abandoned += 1

    def thread_ended(self, borrower: object) -> None:
        self._kept.discard(borrower)
        self.abandoned -= 1
        self._release()
