"""`RedisStore`: task statuses in a Redis shared by the processes (and hosts) of an app.

Key layout (version 1, under `prefix`):

- `{prefix}:meta`: a hash, `version` = the layout version (a newer one is refused);
- `{prefix}:task:{id}`: a hash per task, the fields of a row (`stores.rows`: a `None` is
  an absent field; `payload` is the saved call's bytes), and `cancel_requested` (when) on
  a live task asked to cancel;
- `{prefix}:live`: a sorted set of the live (scheduled, pending or running, not handed
  off) ids,
  scored by `lease_until`: what `reclaim` scans;
- `{prefix}:settled`: a sorted set of the other ids, scored by `settled_at`: what is pruned;
- `{prefix}:owned:{owner}`: a set of the ids an owner leases: what `renew` extends;
- `{prefix}:cancels:{owner}`: a set of the ids of an owner's live tasks asked to cancel:
  what `cancel_requests` reads (a reclaim moves an entry to the new owner's set);
- `{prefix}:owners`: a set of the owners that lease live tasks: what `reclaim` checks
  for processes gone from this host (`stores.lease_owner`);
- `{prefix}:processes`: a hash, owner -> the lane figures it published with its last
  renewal (`stores.peers`, JSON), and `{prefix}:processes:until`, a sorted set of the owners
  scored by when their figures expire (a publication deletes the expired ones).

Later additions (the `result`, `progress`, `progress_message`, `cancel_requested` and
`ran_by` fields, the `cancels` sets, the `owners` set, the `processes` keys) are optional
to a reader, so the layout is still version 1 (the owners of a process that does not add
itself keep their lease).

Every write that must not race another process is a Lua script, atomic in Redis. The
write path (non-blocking `put`, one writer thread, batches, flush) is `stores.batched`'s.
The store's parts each own their scripts and reach Redis through one `RedisLink`
(`stores.redis_link`): the rows' writes (`stores.redis_scripts`), reclaim
(`stores.redis_reclaim`), the processes' figures and the dashboard's rows
(`stores.redis_peers`), idempotency keys (`stores.redis_keys`), periodic ticks
(`stores.redis_ticks`).
Durability is Redis's: with `appendonly yes` a committed batch survives Redis restarting.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from .._errors import StoreUnavailable
from .._extras import install_hint
from .._models import TaskInfo
from .base import Orphan, Tick, TickClaim
from .batched import PROBE_EVERY, BatchedStore
from .keys import KeyHolder
from .peers import ProcessFigures, StoredTask
from .pruning import PruneSchedule
from .rows import FIELDS_JSON, Row, from_redis, info_of, orphan_of, redis_rows

try:
    import redis
    from redis.client import Pipeline
    from redis.exceptions import NoScriptError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"a redis:// store needs the redis package: {install_hint('redis')}") from exc

from . import redis_keys, redis_peers, redis_reclaim, redis_scripts, redis_ticks
from .redis_keys import RedisKeys
from .redis_link import RedisLink
from .redis_peers import RedisPeers
from .redis_reclaim import RedisReclaim
from .redis_ticks import RedisTicks

__all__ = ["RedisStore"]

logger = logging.getLogger("fastapi_offload")

CHUNK = 500  # rows per upsert script call: one call blocks Redis for a few ms at most
PRUNE_MOST = 20_000  # rows pruned per call, by count and by age (as SQLite's 2 * MAX_BATCH)
# Errors worth retrying: Redis is down, starting, read-only (a failover), out of memory.
_TRANSIENT = (NoScriptError, redis.OutOfMemoryError, redis.ReadOnlyError)


class RedisStore(BatchedStore):
    """Statuses in Redis: live tasks always, finished ones up to `capacity` and `retention`
    seconds. `len()` is approximate: the count as of this process's last pruning batch."""

    failures = (redis.RedisError, OSError)

    def __init__(
        self,
        url: str,
        *,
        owner: str,
        lease: float,
        capacity: int,
        retention: float,
        prefix: str = "fastapi_offload",
        timeout: float = 1.0,
        probe_every: float = PROBE_EVERY,
        key_ttl: float = 24 * 3600.0,
    ) -> None:
        self.url, self.owner, self.lease, self.prefix = url, owner, lease, prefix
        self.key_ttl = key_ttl
        self.capacity, self.retention = capacity, retention
        self._pruning = PruneSchedule(capacity)  # which batches prune (`stores.pruning`)
        self._live, self._settled = f"{prefix}:live", f"{prefix}:settled"
        # The store's parts, each with its scripts, talk to Redis through one link.
        scripts = {
            **redis_scripts.SCRIPTS, **redis_reclaim.SCRIPTS, **redis_peers.SCRIPTS,
            **redis_ticks.SCRIPTS, **redis_keys.SCRIPTS,
        }  # fmt: skip
        closed = partial(self._down, "reach it", "the store is not open", shown=True)
        self._link = RedisLink(url, prefix=prefix, timeout=timeout, scripts=scripts, closed=closed)
        self._redis_reclaim = RedisReclaim(self._link, self._live, self._settled)
        self._redis_peers = RedisPeers(self._link, self._live, self._settled, self._decoded)
        self._redis_keys = RedisKeys(self._link)
        self._redis_ticks = RedisTicks(self._link, self._decoded)
        super().__init__(timeout=timeout, probe_every=probe_every)

    def __repr__(self) -> str:
        return f"RedisStore(url={self._link.shown!r}, owner={self.owner!r})"

    def _fetch(self, task_id: str) -> list[TaskInfo]:
        return self._read([task_id])

    def _fetch_live(self) -> list[TaskInfo]:
        return self._read(None)

    async def open(self) -> None:
        """Connect and check the layout; `ConfigError` naming `store` if it cannot be used."""
        self._take_owner_id()
        self._rows = await anyio.to_thread.run_sync(self._link.connect, self._count)
        self._start_writer("offload:redis")

    async def close(self) -> None:
        await self._stop_writer()
        self._link.close()

    # -- in threads ---------------------------------------------------------------------

    def _count(self, client: redis.Redis) -> int:
        return int(client.zcard(self._live)) + int(client.zcard(self._settled))

    def _read(self, ids: list[str] | None) -> list[TaskInfo]:
        # A row that cannot be decoded is skipped with a warning: the API keeps serving.
        # A Redis that does not answer raises (a 503): "no such task" would be a lie.
        if ids is None:
            [live] = self._link.pipeline(lambda pipe: pipe.zrange(self._live, 0, -1))
            ids = [i.decode() for i in live]
        key = f"{self.prefix}:task:"
        rows = self._link.pipeline(lambda pipe: [pipe.hgetall(key + i) for i in ids or ()])
        return [
            info for i, row in zip(ids, rows, strict=True) if row and (info := self._info(i, row))
        ]

    def _info(self, task_id: str, row: dict[bytes, bytes]) -> TaskInfo | None:
        return self._decode(task_id, row)[0]

    def _decode(
        self, task_id: str, row: dict[bytes, bytes]
    ) -> tuple[TaskInfo | None, dict[str, Any]]:
        """The task's status and its row's values; no status (a warning) if unreadable."""
        try:
            values = from_redis(task_id, row)
            return info_of(values), values
        except ValueError as exc:  # UnicodeDecodeError is a ValueError
            self._unreadable(f"task {task_id}", exc)
            return None, {}

    def _processes(self) -> list[ProcessFigures]:
        return self._redis_peers.processes(self.owner)

    def _recent(self, limit: int) -> list[StoredTask]:
        return self._redis_peers.recent(limit, self.owner)

    def _claim_key(self, key: str, holder: KeyHolder) -> KeyHolder | None:
        return self._redis_keys.claim(key, holder, self.key_ttl)

    def _release_keys(self, released: list[tuple[str, str]]) -> None:
        self._redis_keys.release(released)

    def _request_cancel(self, task_id: str) -> bool:
        def build(pipe: Pipeline) -> None:
            self._link.script(pipe, "cancel", [], task_id, repr(time.time()))

        return bool(self._link.pipeline(build)[0])

    def _cancels(self) -> list[str]:
        key = f"{self.prefix}:cancels:{self.owner}"
        [members] = self._link.pipeline(lambda pipe: pipe.smembers(key))
        return [task_id.decode() for task_id in members]

    def _claim_tick(self, name: str, tick: float, task_id: str, overlap: bool) -> TickClaim:
        return self._redis_ticks.claim(name, tick, task_id, overlap)

    def _ticks(self, names: list[str]) -> list[Tick]:
        return self._redis_ticks.read(names)

    def _reclaim(self) -> list[Orphan]:
        here, prune = self._here, self._prune
        claimed = self._redis_reclaim.reclaim(self.owner, self.lease, here, prune, self)
        orphans = []
        for raw_id, requeued, flat in claimed:
            row = dict(zip(flat[::2], flat[1::2], strict=True))
            info, values = self._decode(raw_id.decode(), row)
            if info is not None:
                orphans.append(orphan_of(info, values) if requeued else Orphan(info, False))
        return orphans

    def _prune(self, pipe: Pipeline, now: float) -> None:
        # As SQLite's: a slack of 5 % before pruning by count (fewer, larger deletes), and
        # bounded work per call, made often enough (`stores.pruning`) that it keeps up.
        slack = self.capacity // 20
        cutoff = repr(now - self.retention)
        keys = [self._live, self._settled]
        ttl = repr(self.key_ttl)
        self._link.script(pipe, "prune", keys, self.capacity, slack, cutoff, PRUNE_MOST, ttl)

    def _commit(
        self, pending: dict[str, Row | None], renew: bool, figures: str | None
    ) -> StoreUnavailable | None:
        rows = [row for row in pending.values() if row is not None]
        deleted = [task_id for task_id, row in pending.items() if row is None]
        now, keys = time.time(), [self._live, self._settled]
        prune = self._pruning.due_for(rows, now, deleted=bool(deleted), renew=renew)

        def build(pipe: Pipeline) -> None:
            for start in range(0, len(rows), CHUNK):
                args = redis_rows(rows[start : start + CHUNK])
                self._link.script(pipe, "upsert", keys, self.owner, FIELDS_JSON, *args)
            if deleted:  # a task never accepted: no other process ever ran it
                pipe.delete(*(f"{self.prefix}:task:{task_id}" for task_id in deleted))
                pipe.zrem(self._live, *deleted)
                pipe.zrem(self._settled, *deleted)
                pipe.srem(f"{self.prefix}:owned:{self.owner}", *deleted)
                pipe.srem(f"{self.prefix}:cancels:{self.owner}", *deleted)
            if renew:
                self._link.script(pipe, "renew", [self._live], self.owner, repr(now + self.lease))
            if figures is not None:
                self._redis_peers.publish(pipe, self.owner, figures, now, self.lease)
            if prune:
                self._prune(pipe, now)

        try:
            results = self._link.pipeline(build)
        except Exception as exc:
            # Down, timed out, read-only, out of memory: worth retrying. Anything else (a
            # key of another type in the way) would fail forever: drop those rows, loudly.
            retry = not isinstance(exc, redis.ResponseError) or isinstance(exc, _TRANSIENT)
            retry = (retry and isinstance(exc, redis.RedisError | OSError)) or "BUSY" in str(exc)
            logger.error(
                "task store %s: could not write %d task status(es) (%s); %s: task ids %s. "
                "Check that Redis is running and reachable from this host.",
                self, len(pending), exc, "kept to retry" if retry else "dropped", [*pending][:20],
            )  # fmt: skip
            if not retry:
                pending.clear()
            return self._unavailable(exc)
        if prune:
            self._rows = int(results[-1])
        return None

    def _unreadable(self, what: str, exc: Exception) -> None:
        logger.warning("task store %s: cannot read the status of %s: %s", self, what, exc)
