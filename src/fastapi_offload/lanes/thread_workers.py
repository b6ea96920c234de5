"""The thread lane's worker threads: at most `size` daemon threads taking jobs from one
queue (`Workers`), started on demand and ended when idle."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Protocol

from .advisor import RunDelay

__all__ = ["IDLE", "Job", "Workers"]

# Seconds a worker thread waits for a call before it ends (anyio prunes its idle
# threads after 10 s too): a lane that is busy once in a while holds no idle threads.
IDLE = 10.0


class Job(Protocol):
    def run(self, delay: RunDelay) -> None:
        """Run in a worker thread; never raises (the outcome goes back to the loop)."""
        ...


class Workers:
    """At most `size` daemon threads running jobs from one queue, started when a job
    finds no idle thread, ended after `IDLE` seconds without one.

    A new job wakes an idle thread only when no thread is waking already, and a thread
    that takes a job while more are queued wakes the next one first: short jobs are
    run one after another by the first thread to get the GIL (8 jobs queued in one
    loop iteration used to wake 8 threads, each waiting its turn for the GIL), while
    jobs that block still each get a thread of their own, one wake-up later.
    """

    _names = itertools.count(1)

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._jobs: deque[Job] = deque()
        # Idle threads, most recent last (its stack is the warmest), each blocked on
        # its own lock until `_wake` releases it.
        self._idle: list[threading.Lock] = []
        self._waking = 0  # threads woken or started that have not taken a job yet
        self.count = 0  # threads alive

    def submit(self, job: Job) -> None:
        with self._lock:
            self._jobs.append(job)
            if self._waking:
                return  # that thread takes this job, or wakes another for it
            start = self._wake()
        if start:
            self._start()

    def _wake(self) -> bool:
        # Under the lock: wake an idle thread; `True` if a new one must be started.
        if self._idle:
            self._waking += 1
            self._idle.pop().release()
            return False
        if self.count < self._size:
            self._waking += 1
            self.count += 1
            return True
        return False  # every thread is busy: the first to finish takes the job

    def _start(self) -> None:
        name = f"fastapi-offload thread lane {next(self._names)}"
        try:
            # Daemon: a thread running on after its task was abandoned (a call that
            # never returns) must not keep the process from exiting; it dies with it,
            # as the thread of a BackgroundTasks call does.
            threading.Thread(target=self._work, name=name, daemon=True).start()
        except BaseException:
            # Out of threads (a process limit): the attempt fails with this error, and
            # gives up its queued job, which the next thread skips.
            with self._lock:
                self.count -= 1
                self._waking -= 1
            raise

    def _work(self) -> None:
        delay = RunDelay()
        asleep = threading.Lock()
        woken = True  # started for a job
        try:
            while True:
                start = False
                with self._lock:
                    if woken:
                        self._waking -= 1
                        woken = False
                    if self._jobs:
                        job = self._jobs.popleft()
                        if self._jobs and not self._waking:
                            start = self._wake()  # more to do: another thread for it
                    else:
                        job = None
                        asleep.acquire()
                        self._idle.append(asleep)
                if start:
                    self._start()
                if job is not None:
                    job.run(delay)
                    del job  # its value and context are the loop's now
                    continue
                if asleep.acquire(timeout=IDLE):
                    asleep.release()
                    woken = True
                    continue
                with self._lock:
                    if asleep in self._idle:  # not woken: nothing to do, end
                        self._idle.remove(asleep)
                        self.count -= 1
                        return
                # Woken as the wait ended: `_wake` released the lock just now.
                woken = True
        finally:
            delay.close()
