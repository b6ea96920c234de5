"""`Runtime`: lanes, ledger, store and runner of one `Offload`, and the interface the
request collector uses: `admit()` in the request, `commit()` before the response,
`start()` after it, `abort()` when the request failed.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._config import OffloadConfig
from .._errors import OffloadClosed
from .._models import OffloadStats, TaskHandle, TaskInfo, TaskState
from .._record import TaskRecord
from .._settings import TaskSettings
from .._task_deps import dependencies_of
from ..backends.base import Backend
from ..lanes.advisor import CpuAdvisor
from ..lanes.base import Lane
from ..lanes.loop import LoopLane
from ..lanes.monitor import LoopMonitor
from ..lanes.process.lane import ProcessLane
from ..lanes.remote import RemoteLane
from ..lanes.thread import ThreadLane
from ..stores.base import Orphan, Store
from ..stores.memory import MemoryStore
from . import keys
from .admission import check_admissible
from .after import Ordering
from .bounds import LaneBounds
from .callables import Profiles
from .cancelling import BY_REQUEST
from .ids import IdSource
from .ledger import Ledger
from .requeue import Requeue
from .routing import build_record
from .runner import Runner
from .timetable import PeriodicTasks

__all__ = ["Phase", "Runtime"]

# The longest id the status routes and `offload.status` look up: ids we make are 32 hex
# characters, a remote backend's own at most a few dozen.
MAX_ID = 200


class Phase(enum.Enum):
    """Where a runtime is in its life: the one answer to "is it running"."""

    NEW = "new"  # built, never started
    SERVING = "serving"  # the default runtime: each request waits for its own tasks
    DETACHED = "detached"  # started by a lifespan: tasks outlive their requests
    CLOSED = "closed"  # a detached runtime shutting down or shut down: no new task


class Runtime:
    """Everything one `Offload` runs on. `detached`: started by a lifespan, its tasks
    outlive their requests; otherwise (the default runtime) a request waits for its own."""

    def __init__(
        self, config: OffloadConfig, backend: Backend | None, store: Store | None = None
    ) -> None:
        self.config = config
        self.backend = backend
        self.monitor = LoopMonitor(config.loop_block_threshold)
        self.advisor = CpuAdvisor()
        limit = config.result_max_bytes
        self.process_lane = ProcessLane(
            config.effective_process_workers, config.process_priority, limit
        )
        thread_lane = ThreadLane(config.thread_workers, self.advisor, limit)
        self.lanes: dict[str, Lane] = {
            "loop": LoopLane(self.monitor, limit),
            "thread": thread_lane,
            "process": self.process_lane,
        }
        pending = config.max_pending
        self.store: Store = store if store is not None else MemoryStore.of(config)
        self.ledger = Ledger(
            self.store,
            {
                "loop": LaneBounds(pending, pending, bound_counts_running=True),
                "thread": LaneBounds(config.thread_workers, pending),
                "process": LaneBounds(self.process_lane.capacity, pending),
            },
        )
        self.ledger.count_abandoned("thread", lambda: thread_lane.abandoned)
        self.process_lane.report = self.ledger.progress
        self.remote = None if backend is None else RemoteLane(backend, self.ledger)
        self.runner = Runner(self.ledger, self.lanes, self.remote)
        self.runner.ordering = Ordering(self.ledger, self._local_lane)
        if config.tracing:
            from .tracing import TaskTracer  # imports OpenTelemetry only when asked

            self.runner.tracer = TaskTracer()
        # Its key is set when the store opens (`Lifecycle.open`): it may live beside it.
        self.requeue = Requeue(self.ledger)
        self._app: weakref.ref[Any] | None = None
        self.phase = Phase.NEW
        # Whether a request's ASGI call waits for the tasks it added: always for the
        # default runtime, and with `wait_for_tasks` (tests) for a detached one too.
        # Set with the phase: it is read several times per task.
        self.request_waits = True
        self._profiles = Profiles()
        self._new_id = IdSource()
        # Declared with `@offload.every` / `@offload.cron`; run by `core.periodic`.
        self.periodic = PeriodicTasks()

    # -- the collector's interface ------------------------------------------------------

    def admit(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: TaskSettings,
        *,
        task_id: str | None = None,
    ) -> TaskRecord | TaskHandle:
        """Validate, route and admit one call, inside the request; raise if it cannot run.
        `task_id`: the id it gets (a periodic task's, claimed with its tick), else a new one.
        A key some task holds returns that task's handle, admitting nothing (`core.keys`)."""
        if not self.accepting:
            raise OffloadClosed(
                "the Offload runtime is not running (not started yet, or shutting down); "
                "start it with FastAPI(lifespan=offload.lifespan) or `async with offload:`"
            )
        record = build_record(
            func,
            args,
            kwargs,
            options,
            self.config,
            remote=self.backend is not None,
            cpu_bound=self.advisor.flagged,
            profiles=self._profiles,
            new_id=self._new_id if task_id is None else lambda: task_id,
        )
        if record.after or record.due_at is not None or record.lane == "remote":
            check_admissible(
                record, self.ledger, self.is_local, detached=self.detached, remote=self.remote
            )
        if (needs := dependencies_of(func, record.name)) is not None:
            needs.check_call(args, kwargs, record.lane)
            record.needs, record.app = needs, self.app
        if record.lane == "remote":
            assert self.remote is not None  # `check_admissible` refused it otherwise
            self.remote.prepare(record)
        elif self.store.durable and (record.requeue or record.due_at is not None):
            # Kept with its row: run again after a crash (requeue), or run when due by
            # whichever process holds it then (delayed).
            self.requeue.save(record)
        if record.key is not None:  # `core.keys`: a held key admits nothing
            return keys.admit(self.ledger, record, record.key)
        self.ledger.admit(record)
        return record

    def attach(self, *, detached: bool = False) -> None:
        """Accept tasks on the running loop; `detached=False` (the default runtime): each
        request waits for its own. `Lifecycle.open` does this and more for a detached one."""
        self.runner.open()
        self.phase = Phase.DETACHED if detached else Phase.SERVING
        self.request_waits = not detached or self.config.wait_for_tasks

    def close(self) -> None:
        """Accept no new task (shutdown); what was accepted is drained by the lifecycle."""
        self.phase = Phase.CLOSED

    @property
    def accepting(self) -> bool:
        return self.phase is Phase.SERVING or self.phase is Phase.DETACHED

    @property
    def detached(self) -> bool:
        """Started by a lifespan (and maybe shutting down since)."""
        return self.phase is Phase.DETACHED or self.phase is Phase.CLOSED

    @property
    def app(self) -> Any:
        """The app this runtime serves (its `dependency_overrides` apply to the tasks'
        dependencies), once a lifespan or a first request told it; else `None`."""
        return None if self._app is None else self._app()

    def serve(self, app: Any) -> None:
        # Weak: the app's state holds this runtime, and an app's default runtime is
        # kept in a weak mapping keyed by the app.
        try:
            self._app = weakref.ref(app)
        except TypeError:
            self._app = None

    def is_local(self, record: TaskRecord) -> bool:
        return self._local_lane(record.lane)

    def _local_lane(self, lane: str) -> bool:
        # The one answer to "does a lane of this process run it": a remote task's
        # `lane` is its backend's name.
        return lane in self.lanes

    @property
    def commits(self) -> bool:
        """Whether a request's tasks need `commit()` before its response."""
        return self.backend is not None or self.store.durable

    async def commit(self, records: Sequence[TaskRecord]) -> None:
        """Before the response: write a request's tasks to a durable store (write-ahead),
        then send its remote ones. A remote task was checked by the backend when it
        was admitted, so a failure here is the broker's; if it fails part-way, the
        error names the tasks that were accepted and those not sent."""
        if not records:
            return
        if self.store.durable:
            try:
                await self.store.flush()
            except BaseException:
                for record in records:
                    self.ledger.discarded(record)
                raise
        if self.remote is not None:
            await self.remote.send_all([r for r in records if not self.is_local(r)])

    def adopt(self, orphan: Orphan) -> TaskRecord | None:
        """Take on a task whose process died (reclaimed from the store), requeue-able or
        scheduled: the record to `start` (a scheduled one runs when due), or `None` when
        it will not run (`Requeue.adopt`)."""
        return self.requeue.adopt(orphan, self._local_lane)

    async def cancel(self, task_id: str) -> bool:
        """Cancel a task by id, wherever it runs: here (a scheduled or waiting task never
        starts, a loop or process task is stopped, a thread task is asked to stop), in
        another process sharing a durable store (which sees the request within a
        second), or in the remote backend. `False` for an id that is unknown or already
        ended."""
        if len(task_id) > MAX_ID:
            return False  # no task has such an id: no store or backend is asked
        if self.runner.cancel(task_id, BY_REQUEST, force=False):
            return True
        if self.store.durable and await self.store.request_cancel(task_id):
            return True
        if self.remote is not None:
            info = await self.store.get(task_id)
            if info is None or not self._local_lane(info.lane):
                return await self.remote.cancel(task_id)
        return False

    def cancel_requested(self, task_ids: Sequence[str]) -> None:
        """Another process asked (through the shared store) to cancel these tasks."""
        for task_id in task_ids:
            self.runner.cancel(task_id, BY_REQUEST, force=False)

    def start(self, record: TaskRecord) -> None:
        """Start a task after the response (local), or send it (remote, added late)."""
        self.runner.start(record)

    async def wait(self, records: Sequence[TaskRecord]) -> None:
        await self.runner.wait(records)

    def abort(self, records: Sequence[TaskRecord]) -> None:
        """The request failed before its response: none of its tasks was accepted."""
        for record in records:
            self.ledger.discarded(record)

    async def abort_before_response(self, records: Sequence[TaskRecord]) -> None:
        """`abort`, returning once their keys are free (`core.keys.discard`)."""
        await keys.discard(self.ledger, records)

    # -- queries --------------------------------------------------------------------

    async def status(self, task_id: str) -> TaskInfo:
        if len(task_id) > MAX_ID:
            # Ids come from URLs: one longer than any id a lane or a backend makes is
            # unknown without asking a store or a broker to look it up.
            return TaskInfo(id=task_id, name="", state=TaskState.UNKNOWN)
        info = await self.store.get(task_id)
        local = info is not None and self._local_lane(info.lane)
        if self.remote is not None and not local:
            remote = await self.remote.status(task_id, info)
            if remote is not None:
                return remote
        if info is not None:
            return info
        return TaskInfo(id=task_id, name="", state=TaskState.UNKNOWN)

    def stats(self) -> OffloadStats:
        return OffloadStats(
            lanes={name: self.ledger.lane_stats(name) for name in self.lanes},
            loop_blocks=self.monitor.blocks,
            longest_loop_block=self.monitor.longest,
            process_crashes=self.process_lane.crashed,
            process_cpu_seconds=self.process_lane.cpu_seconds,
            cpu_bound_callables=tuple(sorted(self.advisor.flagged)),
            statuses_kept=len(self.store),
        )

    def idle(self) -> bool:
        """No task accepted here is unsettled (the process lane keeps its workers warm
        meanwhile)."""
        return self.ledger.active == 0
