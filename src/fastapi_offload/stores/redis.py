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
Durability is Redis's: with `appendonly yes` a committed batch survives Redis restarting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread

from .._errors import ConfigError, StoreUnavailable
from .._extras import install_hint
from .._models import TaskInfo
from .base import Orphan, Tick, TickClaim
from .batched import PROBE_EVERY, BatchedStore
from .keys import CLAIM_GRACE, KeyHolder
from .lease_owner import OWNER_ID_MAX, gone_owners
from .peers import (
    EXPIRY_LEASES,
    FIGURES_MAX,
    PROCESSES_MAX,
    RESULT_MAX,
    TEXT_MAX,
    ProcessFigures,
    StoredTask,
    decode_figures,
    stored_task,
)
from .rows import FIELDS_JSON, Row, from_redis, info_of, orphan_of, redis_rows
from .texts import interrupted_reason, utc_text
from .ticks import TICK_FIELDS, check_tick

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.client import Pipeline
    from redis.exceptions import NoScriptError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"a redis:// store needs the redis package: {install_hint('redis')}") from exc

from .redis_scripts import SCRIPTS

__all__ = ["RedisStore"]

logger = logging.getLogger("fastapi_offload")

VERSION = 1
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
        self._shown = _masked(url)  # what messages and logs name: never the password
        self._live, self._settled = f"{prefix}:live", f"{prefix}:settled"
        self._client: redis.Redis | None = None
        self._shas: dict[str, str] = {}
        super().__init__(timeout=timeout, probe_every=probe_every)

    def __repr__(self) -> str:
        return f"RedisStore(url={self._shown!r}, owner={self.owner!r})"

    def _fetch(self, task_id: str) -> list[TaskInfo]:
        return self._read([task_id])

    def _fetch_live(self) -> list[TaskInfo]:
        return self._read(None)

    async def open(self) -> None:
        """Connect and check the layout; `ConfigError` naming `store` if it cannot be used."""
        self._take_owner_id()
        self._client = await anyio.to_thread.run_sync(self._connect)
        self._start_writer("offload:redis")

    async def close(self) -> None:
        await self._stop_writer()
        if (client := self._client) is not None:
            self._client = None
            client.close()

    # -- in threads ---------------------------------------------------------------------

    def _connect(self) -> redis.Redis:
        try:  # the store timeout on every socket operation: a frozen Redis is a 503 soon
            client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # One retry on a broken connection (Redis restarted: a pooled one is stale),
                # none on a timeout, which would only double the wait on a frozen Redis.
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        except ValueError as exc:
            raise self._unusable(f"it is not a usable Redis URL ({exc})") from exc
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise self._unusable(
                "decode_responses is set in the URL; the store reads raw bytes: remove it"
            )
        try:
            client.ping()
            meta = f"{self.prefix}:meta"
            client.hsetnx(meta, "version", VERSION)  # the first process to open sets it
            found = client.hget(meta, "version")
            version = int(found) if found is not None and found.isdigit() else -1
            if version > VERSION or version < 0:
                raise self._unusable(
                    f"{meta} holds key layout version {found!r}, not one this fastapi-offload "
                    f"reads (up to {VERSION}): upgrade fastapi-offload in every process that "
                    "shares it, or use another prefix or database"
                )
            self._load(client)
            self._rows = int(client.zcard(self._live)) + int(client.zcard(self._settled))
        except (redis.RedisError, OSError) as exc:
            client.close()
            raise self._unusable(
                f"it cannot be reached or used ({type(exc).__name__}: {exc}); check the host, "
                "port, database and password, and that Redis is running"
            ) from exc
        except BaseException:
            client.close()
            raise
        return client

    def _load(self, client: redis.Redis) -> None:
        self._shas = {name: str(client.script_load(text)) for name, text in SCRIPTS.items()}

    def _pipeline(self, build: Callable[[Pipeline], object]) -> list[Any]:
        if (client := self._client) is None:
            raise self._down("reach it", "the store is not open", shown=True)
        for attempt in (1, 2):
            pipe = client.pipeline(transaction=False)
            build(pipe)
            try:
                return pipe.execute()
            except NoScriptError:  # Redis restarted, or SCRIPT FLUSH: load them again
                if attempt == 2:
                    raise
                self._load(client)
        raise AssertionError("unreachable")

    def _script(self, pipe: Pipeline, name: str, keys: list[str], *args: Any) -> None:
        pipe.evalsha(self._shas[name], len(keys), *keys, self.prefix, *args)

    def _read(self, ids: list[str] | None) -> list[TaskInfo]:
        # A row that cannot be decoded is skipped with a warning: the API keeps serving.
        # A Redis that does not answer raises (a 503): "no such task" would be a lie.
        if ids is None:
            ids = [i.decode() for i in self._pipeline(lambda p: p.zrange(self._live, 0, -1))[0]]
        key = f"{self.prefix}:task:"
        rows = self._pipeline(lambda pipe: [pipe.hgetall(key + i) for i in ids or ()])
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
        def build(pipe: Pipeline) -> None:
            self._script(pipe, "processes", [], repr(time.time()), PROCESSES_MAX, FIGURES_MAX)

        me = self.owner.encode()
        found = (
            self._decoded(
                f"process {owner[:100]!r}", partial(decode_figures, text, here=owner == me)
            )
            for owner, text in self._pipeline(build)[0]
        )
        return [figures for figures in found if figures is not None]

    def _recent(self, limit: int) -> list[StoredTask]:
        # One character past each cut: the row then shows that it was cut ("…").
        def build(pipe: Pipeline) -> None:
            keys = [self._live, self._settled]
            self._script(pipe, "recent", keys, limit, TEXT_MAX + 1, RESULT_MAX + 1)

        found = (
            self._decoded(f"task {raw_id[:40]!r}", partial(_stored, raw_id, fields, self.owner))
            for raw_id, fields in self._pipeline(build)[0]
        )
        return [task for task in found if task is not None]

    def _claim_key(self, key: str, holder: KeyHolder) -> KeyHolder | None:
        # One script (`redis_scripts.CLAIM_KEY`): the check and the claim are one step. A
        # call, not a pipeline: it runs in the request, on the loop for an async endpoint.
        if (client := self._client) is None:
            raise self._down("reach it", "the store is not open", shown=True)
        args = [self.prefix, key, holder.task_id, holder.name, holder.lane, repr(time.time())]
        args += [repr(self.key_ttl), repr(CLAIM_GRACE)]
        try:
            found: Any = client.evalsha(self._shas["claim_key"], 0, *args)
        except NoScriptError:  # Redis restarted, or SCRIPT FLUSH: load them again
            self._load(client)
            found = client.evalsha(self._shas["claim_key"], 0, *args)
        if found is None:
            return None
        task_id, name, lane = (value.decode(errors="replace") for value in found)
        return KeyHolder(task_id, name, lane)

    def _release_keys(self, released: list[tuple[str, str]]) -> None:
        def build(pipe: Pipeline) -> None:
            for key, task_id in released:
                self._script(pipe, "release_key", [], key, task_id)

        self._pipeline(build)

    def _request_cancel(self, task_id: str) -> bool:
        def build(pipe: Pipeline) -> None:
            self._script(pipe, "cancel", [], task_id, repr(time.time()))

        return bool(self._pipeline(build)[0])

    def _cancels(self) -> list[str]:
        key = f"{self.prefix}:cancels:{self.owner}"
        [members] = self._pipeline(lambda pipe: pipe.smembers(key))
        return [task_id.decode() for task_id in members]

    def _claim_tick(self, name: str, tick: float, task_id: str, overlap: bool) -> TickClaim:
        def build(pipe: Pipeline) -> None:
            flag = "1" if overlap else "0"
            self._script(pipe, "tick", [], name, repr(tick), task_id, flag, repr(time.time()))

        [(claimed, running)] = self._pipeline(build)
        return TickClaim(bool(claimed), running.decode() if running else None)

    def _ticks(self, names: list[str]) -> list[Tick]:
        key = f"{self.prefix}:tick:"
        stored = self._pipeline(lambda pipe: [pipe.hmget(key + n, TICK_FIELDS) for n in names])
        ids = {fields[2] for fields in stored if fields[0] is not None and fields[2] is not None}
        asked = sorted(ids)
        tasks: dict[bytes, list[bytes | None]] = {}
        if asked:  # the state and lane of the task each ran last: one more round trip
            task = f"{self.prefix}:task:"
            keys = [task + i.decode("utf-8", "replace") for i in asked]
            answers = self._pipeline(lambda pipe: [pipe.hmget(k, "state", "lane") for k in keys])
            tasks = dict(zip(asked, answers, strict=True))
        found = []
        for name, fields in zip(names, stored, strict=True):
            if fields[0] is None:
                continue  # no tick of this name yet
            state, lane = tasks.get(fields[2], (None, None))
            decode = partial(_tick, name, [*fields, state, lane])
            if (tick := self._decoded(f"the tick of {name[:100]!r}", decode)) is not None:
                found.append(tick)
        return found

    def _reclaim(self) -> list[Orphan]:
        now = time.time()
        reasons = [interrupted_reason("%s", "%s", requeue) for requeue in (True, False)]
        found = utc_text(now)
        reasons += [
            interrupted_reason("%s", None, saved, found_gone=found) for saved in (True, False)
        ]
        keys, args = [self._live, self._settled], [self.owner, repr(now), repr(now + self.lease)]
        args += [*reasons, *self._gone()]

        def build(pipe: Pipeline) -> None:
            self._script(pipe, "reclaim", keys, *args)
            self._prune(pipe, now)

        claimed, *_ = self._pipeline(build)
        try:
            claimed += self._strays({raw_id for raw_id, _, _ in claimed})
        except (redis.RedisError, OSError) as exc:
            logger.warning("task store %s: could not look for tasks claimed earlier: %s", self, exc)
        orphans = []
        for raw_id, requeued, flat in claimed:
            row = dict(zip(flat[::2], flat[1::2], strict=True))
            info, values = self._decode(raw_id.decode(), row)
            if info is not None:
                orphans.append(orphan_of(info, values) if requeued else Orphan(info, False))
        return orphans

    def _gone(self) -> list[str]:
        # Owners whose process is gone from this host lose their tasks now, not when their
        # lease runs out. A sample, so a set grown large costs one bounded read per pass.
        [members] = self._pipeline(lambda pipe: pipe.srandmember(f"{self.prefix}:owners", 100))
        owners = [
            owner
            for raw in members
            if len(raw) <= OWNER_ID_MAX and (owner := raw.decode("utf-8", "replace")) != self.owner
        ]
        gone = gone_owners(owners)
        for owner in gone:
            logger.info(
                "task store %s: the process of owner %s is gone from this host: its tasks "
                "are reclaimed now, not when its lease runs out", self, owner,
            )  # fmt: skip
        return gone

    def _strays(self, claimed: set[bytes]) -> list[tuple[bytes, int, list[bytes]]]:
        # Rows with a saved call (requeue-able, or scheduled) this owner claimed but never
        # took up (a reply lost, or the caller failed after the script ran), or left to the
        # store at a shutdown before it opened again: returned instead of renewed forever.
        assert self._client is not None
        here = {task_id.encode() for task_id in list(self._here)}
        found = []
        members: set[bytes] = self._client.smembers(  # type: ignore[assignment]  # bytes: no decoding
            f"{self.prefix}:owned:{self.owner}"
        )
        for raw_id in members:
            if raw_id in here or raw_id in claimed:
                continue
            key = f"{self.prefix}:task:{raw_id.decode()}"
            row: dict[bytes, bytes] = self._client.hgetall(key)  # type: ignore[assignment]  # sync client
            flat = [item for pair in row.items() for item in pair]
            state = row.get(b"state")
            live = state in (b"pending", b"running", b"scheduled")
            saved = row.get(b"requeue") == b"1" or state == b"scheduled"
            if live and saved and b"payload" in row:
                found.append((raw_id, 1, flat))
        return found

    def _prune(self, pipe: Pipeline, now: float) -> None:
        # As SQLite's: a slack of 5 % before pruning by count (fewer, larger deletes), and
        # bounded work per call, made for every batch that settles rows, so it keeps up.
        slack = self.capacity // 20
        cutoff = repr(now - self.retention)
        keys = [self._live, self._settled]
        ttl = repr(self.key_ttl)
        self._script(pipe, "prune", keys, self.capacity, slack, cutoff, PRUNE_MOST, ttl)

    def _commit(
        self, pending: dict[str, Row | None], renew: bool, figures: str | None
    ) -> StoreUnavailable | None:
        rows = [row for row in pending.values() if row is not None]
        deleted = [task_id for task_id, row in pending.items() if row is None]
        # Requests wait for admissions (live rows): prune in the other batches.
        prune = bool(deleted) or renew or any(row.settled_at is not None for row in rows)
        now, keys = time.time(), [self._live, self._settled]

        def build(pipe: Pipeline) -> None:
            for start in range(0, len(rows), CHUNK):
                args = redis_rows(rows[start : start + CHUNK])
                self._script(pipe, "upsert", keys, self.owner, FIELDS_JSON, *args)
            if deleted:  # a task never accepted: no other process ever ran it
                pipe.delete(*(f"{self.prefix}:task:{task_id}" for task_id in deleted))
                pipe.zrem(self._live, *deleted)
                pipe.zrem(self._settled, *deleted)
                pipe.srem(f"{self.prefix}:owned:{self.owner}", *deleted)
                pipe.srem(f"{self.prefix}:cancels:{self.owner}", *deleted)
            if renew:
                self._script(pipe, "renew", [self._live], self.owner, repr(now + self.lease))
            if figures is not None:
                until = repr(now + EXPIRY_LEASES * self.lease)
                self._script(pipe, "publish", [], self.owner, figures, repr(now), until)
            if prune:
                self._prune(pipe, now)

        try:
            results = self._pipeline(build)
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

    def _unusable(self, what: object) -> ConfigError:
        return ConfigError(f"store (OFFLOAD_STORE) {self._shown}: {what}")


def _stored(raw_id: bytes, fields: list[bytes | None], owner: str) -> StoredTask:
    """A row of the `recent` script (Redis holds text), checked by `stored_task`."""
    name, state, lane, created, started, finished, attempts, error, result = fields[:9]
    progress, message, ran_by, handed_off = fields[9:]

    def text(value: bytes | None) -> str | None:
        # A cut may split a character: shown as a replacement character, not refused.
        return None if value is None else value.decode(errors="replace")

    def number(value: bytes | None) -> float | None:
        return None if value is None else float(value)

    return stored_task((
        raw_id.decode(), text(name), text(state), text(lane), number(created),
        number(started), number(finished), int(attempts or b""), text(error), text(result),
        number(progress), text(message), text(ran_by), handed_off == b"1",
    ), owner)  # fmt: skip


def _tick(name: str, fields: list[bytes | None]) -> Tick:
    """A tick hash's fields (`TICK_FIELDS`), then its task's state and lane, as a `Tick`:
    Redis holds text, decoded here and checked by `check_tick` (`ValueError` if bad)."""
    tick, claimed_at, task_id, task_tick, state, lane = fields

    def number(value: bytes | None) -> float | None:
        return None if value is None else float(value)

    def text(value: bytes | None) -> str | None:
        return None if value is None else value.decode()

    values = (number(tick), number(claimed_at), text(task_id), number(task_tick))
    return check_tick(name, (*values, text(state), text(lane)))


def _masked(url: str) -> str:
    """`url` with its password (if any) replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, host = parts.username or "", parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
