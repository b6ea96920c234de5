"""`MemoryStore`: the default store, bounded, in the memory of one process."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import OrderedDict
from collections.abc import Sequence

from .._config import OffloadConfig
from .._models import TaskInfo
from .._record import Snapshot, TaskRecord, snapshot_info, with_error
from .base import Orphan, Tick, TickClaim
from .keys import KeyHolder, MemoryKeys
from .peers import ProcessFigures, StoredTask

__all__ = ["MemoryStore"]


class MemoryStore:
    """Live tasks are always kept; finished ones up to `capacity`, oldest forgotten first.

    Each `put` keeps a snapshot of the task's status fields (`TaskRecord.snapshot`, taken
    under the ledger's lock), never the record: the ledger is the one registry of live
    records, and neither a function nor its arguments stay here, so memory stays bounded
    however many tasks run. Progress shows as the ledger publishes it (at most five
    times a second, the last one always), as with a durable store. Kept results are bounded
    too, at `result_budget` bytes of JSON in all: past it, the oldest results are
    dropped (their statuses stay, saying so in `error`). Idempotency keys are held up to
    `capacity` too (`stores.keys.MemoryKeys`), each `key_ttl` seconds past its task's end.
    """

    durable = False

    def __init__(
        self,
        capacity: int,
        result_budget: int = 64 * 1024 * 1024,
        *,
        key_ttl: float = 24 * 3600.0,
    ) -> None:
        self.capacity = capacity
        self.result_budget = result_budget
        self.keys = MemoryKeys(capacity, key_ttl)
        self._live: dict[str, Snapshot] = {}  # scheduled, pending or running
        self._done: OrderedDict[str, Snapshot] = OrderedDict()
        # Kept results as JSON text, oldest first: decoded when read, not when stored
        # (most results are never read, and a decode on the loop costs microseconds).
        self._results: OrderedDict[str, str] = OrderedDict()
        self.result_bytes = 0
        # Periodic tasks' last ticks, one entry per periodic task (bounded by the code).
        self._ticks: dict[str, Tick] = {}

    @classmethod
    def of(cls, config: OffloadConfig) -> MemoryStore:
        """The memory store `config` asks for (no `store`, or `store="memory"`)."""
        return cls(config.status_capacity, 64 * config.result_max_bytes, key_ttl=config.key_ttl)

    def __repr__(self) -> str:
        return f"MemoryStore(capacity={self.capacity}, live={len(self._live)})"

    def put(self, record: TaskRecord) -> None:
        if record.live:
            self._live[record.id] = record.snapshot()
            return
        self._live.pop(record.id, None)
        if self._results:
            self._forget_result(record.id)
        if record.key is not None:
            self.keys.settled(record.key, record.id, time.time())
        # A record finishes once (the ledger's `live` check), so its id is new here and
        # goes last, the newest: no `move_to_end`.
        self._done[record.id] = record.snapshot()
        if record.result is not None:
            self._results[record.id] = record.result
            self.result_bytes += len(record.result)
            while self.result_bytes > self.result_budget:
                self._drop_oldest_result()
        while len(self._done) > self.capacity:
            task_id, _ = self._done.popitem(last=False)
            self._forget_result(task_id)

    def evict(self, task_id: str) -> None:
        self._live.pop(task_id, None)
        self._done.pop(task_id, None)
        self._forget_result(task_id)

    def claim_key(self, key: str, holder: KeyHolder) -> KeyHolder | None:
        return self.keys.claim(key, holder, self._live.__contains__)

    def release_key(self, key: str, task_id: str) -> None:
        self.keys.release(key, task_id)

    def _forget_result(self, task_id: str) -> None:
        text = self._results.pop(task_id, None)
        if text is not None:
            self.result_bytes -= len(text)

    def _drop_oldest_result(self) -> None:
        task_id, text = self._results.popitem(last=False)
        self.result_bytes -= len(text)
        done = self._done.get(task_id)
        if done is not None:
            self._done[task_id] = with_error(
                done,
                f"result dropped: the memory store keeps {self.result_budget} bytes of "
                "results in all, and newer ones took its place; use a durable store "
                "(OFFLOAD_STORE) to keep more",
            )

    async def get(self, task_id: str) -> TaskInfo | None:
        return self.get_now(task_id)

    def get_now(self, task_id: str) -> TaskInfo | None:
        """`get` without awaiting: a memory look-up never waits."""
        live = self._live.get(task_id)
        if live is not None:
            return snapshot_info(live)
        done = self._done.get(task_id)
        if done is None:
            return None
        text = self._results.get(task_id)
        return snapshot_info(done, None if text is None else json.loads(text))

    async def active(self) -> list[TaskInfo]:
        return [snapshot_info(live) for live in list(self._live.values())]

    async def flush(self) -> None:
        return None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def renew(self, figures: ProcessFigures | None = None) -> None:
        return None  # no other process reads them

    async def processes(self) -> list[ProcessFigures]:
        return []

    async def recent(self, limit: int) -> list[StoredTask]:
        return []

    async def reclaim(self) -> list[Orphan]:
        return []  # nothing outlives the process

    async def request_cancel(self, task_id: str) -> bool:
        return False  # no other process shares it: the runtime cancels its own tasks

    async def cancel_requests(self) -> list[str]:
        return []

    async def claim_tick(self, name: str, tick: float, task_id: str, *, overlap: bool) -> TickClaim:
        # No await between the read and the write: atomic on the loop.
        last = self._ticks.get(name)
        if last is not None and last.tick >= tick:
            return TickClaim(False)
        now = time.time()
        previous = None if last is None else last.task_id
        if previous is not None and not overlap and previous in self._live:
            assert last is not None
            self._ticks[name] = dataclasses.replace(last, tick=tick, claimed_at=now)
            return TickClaim(True, running=previous)
        self._ticks[name] = Tick(name, tick, now, task_id, tick)
        return TickClaim(True)

    async def ticks(self, names: Sequence[str]) -> dict[str, Tick]:
        found = {}
        for name in names:
            last = self._ticks.get(name)
            if last is None:
                continue
            info = None if last.task_id is None else self.get_now(last.task_id)
            if info is not None:
                last = dataclasses.replace(last, state=info.state.value, lane=info.lane)
            found[name] = last
        return found

    def __len__(self) -> int:
        return len(self._live) + len(self._done)
