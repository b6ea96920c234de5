"""What the store tests share: task records, the clock, and a look at a durable store's
raw contents (its file or its Redis) as another process would see it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import anyio
import redis

from fastapi_offload._models import TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.peers import EXPIRY_LEASES as EXPIRY
from fastapi_offload.stores.peers import RESULT_MAX, LaneFigures, ProcessFigures
from fastapi_offload.stores.redis import RedisStore
from fastapi_offload.stores.sqlite import SqliteStore

SETTINGS: dict[str, Any] = {"lease": 60.0, "capacity": 100, "retention": 3600.0}
P = "fastapi_offload"  # the Redis store's default prefix
LIVE = "state IN ('scheduled', 'pending', 'running') AND handed_off = 0"  # live rows


def record(task_id: str, state: TaskState = TaskState.PENDING, **fields: Any) -> TaskRecord:
    task = TaskRecord(task_id, "jobs.f", "thread", print, (), {}, None, 0, 1.0, state=state)
    for name, value in fields.items():
        setattr(task, name, value)
    if state.finished:
        task.finished_at = time.time()
    return task


def figures(host: str, pid: int, running: int = 0) -> ProcessFigures:
    lanes = (LaneFigures("thread", 4, running, 0), LaneFigures("process", 2, 0, 3))
    return ProcessFigures(host, pid, started_at=time.time() - 60, at=time.time(), lanes=lanes)


async def sleep_until(moment: float) -> None:
    """Leases run out on the clock: there is no event to wait for."""
    await anyio.sleep(max(0.0, moment - time.time()) + 0.01)


def query(path: Path, sql: str, *args: Any) -> list[Any]:
    """Read the file as another process would, with a connection of its own."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(sql, args).fetchall()
    conn.close()
    return rows


OpenStore = Callable[..., Awaitable["SqliteStore | RedisStore"]]


class Durable:
    """A durable store of one kind, opened under several owners (processes) by `open`,
    and its raw contents, read or changed as another process would."""

    kind: str
    at: Any  # where the store is: the file's path, or the URL
    #: What the store's `repr` names (the file, or the URL's scheme).
    shown: str
    #: The statement of a subprocess that builds a store of this kind with `owner`,
    #: `lease`, `capacity` and `retention` (the test formats them in).
    constructor: str

    def __init__(self, open_store: OpenStore) -> None:
        self.open = open_store

    def owner_state(self, task_id: str) -> tuple[str | None, str | None]:
        """The row's leasing owner and state (None, None for no row)."""
        raise NotImplementedError

    def lease_until(self, task_id: str) -> float:
        raise NotImplementedError

    def lease_ends(self) -> float:
        """When the last live row's lease runs out."""
        raise NotImplementedError

    def task_count(self) -> int:
        raise NotImplementedError

    def owned(self, owner: str) -> set[str]:
        """The ids of the live rows `owner` leases."""
        raise NotImplementedError

    def live_count(self) -> int:
        raise NotImplementedError

    def ran_by(self, task_id: str) -> tuple[str | None, str | None]:
        """The row's leasing owner and the process that ran it."""
        raise NotImplementedError

    def age(self, task_id: str, seconds: float) -> None:
        """Make a settled row look settled `seconds` earlier."""
        raise NotImplementedError

    def corrupt(self, task_id: str, field: str, text: str) -> None:
        """Write `text` into a field of the row, as someone else than a store might."""
        raise NotImplementedError

    def forge_figures(self, owner: str, text: str | bytes, until: float) -> None:
        raise NotImplementedError

    def key_fields(self, key: str) -> dict[str, Any] | None:
        """What the store keeps of idempotency key `key` (None: nothing)."""
        raise NotImplementedError

    def set_key_field(self, key: str, field: str, value: Any) -> None:
        """Change what the store keeps of key `key`, as another process (or clock) might."""
        raise NotImplementedError

    def published(self) -> list[str]:
        """The owners whose figures are kept (expired or not)."""
        raise NotImplementedError

    def published_until(self, owner: str) -> float:
        raise NotImplementedError


class SqliteFile(Durable):
    kind, shown = "sqlite", "offload.db"
    constructor = "SqliteStore({at!r}, owner={owner!r}, lease={lease}, capacity={capacity}, retention={retention})"  # noqa: E501

    def __init__(self, open_store: OpenStore, path: Path) -> None:
        super().__init__(open_store)
        self.path = self.at = path

    def _one(self, sql: str, *args: Any) -> Any:
        return query(self.path, sql, *args)

    def owner_state(self, task_id: str) -> tuple[str | None, str | None]:
        found = self._one("SELECT owner, state FROM tasks WHERE id = ?", task_id)
        return cast("tuple[str | None, str | None]", found[0] if found else (None, None))

    def lease_until(self, task_id: str) -> float:
        return float(self._one("SELECT lease_until FROM tasks WHERE id = ?", task_id)[0][0])

    def lease_ends(self) -> float:
        return float(self._one("SELECT max(lease_until) FROM tasks")[0][0])

    def task_count(self) -> int:
        return int(self._one("SELECT count(*) FROM tasks")[0][0])

    def owned(self, owner: str) -> set[str]:
        return {i for (i,) in self._one(f"SELECT id FROM tasks WHERE owner = ? AND {LIVE}", owner)}

    def live_count(self) -> int:
        return int(self._one(f"SELECT count(*) FROM tasks WHERE {LIVE}")[0][0])

    def ran_by(self, task_id: str) -> tuple[str | None, str | None]:
        [found] = self._one("SELECT owner, ran_by FROM tasks WHERE id = ?", task_id)
        return cast("tuple[str | None, str | None]", found)

    def _write(self, sql: str, *args: Any) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute(sql, args)
        conn.close()

    def age(self, task_id: str, seconds: float) -> None:
        self._write("UPDATE tasks SET settled_at = settled_at - ? WHERE id = ?", seconds, task_id)

    def corrupt(self, task_id: str, field: str, text: str) -> None:
        self._write(f"UPDATE tasks SET {field} = ? WHERE id = ?", text, task_id)

    def forge_figures(self, owner: str, text: str | bytes, until: float) -> None:
        self._write("INSERT INTO processes VALUES (?, ?, ?)", owner, text, until)

    def published(self) -> list[str]:
        return [owner for (owner,) in self._one("SELECT owner FROM processes ORDER BY owner")]

    def key_fields(self, key: str) -> dict[str, Any] | None:
        found = self._one("SELECT * FROM task_keys WHERE key = ?", key)
        names = ("key", "task_id", "name", "lane", "claimed_at", "settled_at")
        return dict(zip(names, found[0], strict=True)) if found else None

    def set_key_field(self, key: str, field: str, value: Any) -> None:
        self._write(f"UPDATE task_keys SET {field} = ? WHERE key = ?", value, key)

    def published_until(self, owner: str) -> float:
        found = self._one("SELECT expires_at FROM processes WHERE owner = ?", owner)
        return float(found[0][0])


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


class RedisDatabase(Durable):
    kind, shown = "redis", "redis://"
    constructor = "RedisStore({at!r}, owner={owner!r}, lease={lease}, capacity={capacity}, retention={retention})"  # noqa: E501

    def __init__(self, open_store: OpenStore, url: str, client: redis.Redis) -> None:
        super().__init__(open_store)
        self.at, self.client = url, client

    def owner_state(self, task_id: str) -> tuple[str | None, str | None]:
        owner, state = cast(
            "list[bytes | None]", self.client.hmget(f"{P}:task:{task_id}", "owner", "state")
        )
        return (
            None if owner is None else owner.decode(),
            None if state is None else state.decode(),
        )

    def lease_until(self, task_id: str) -> float:
        # The live set's score and the hash's field say the same. Read in one transaction:
        # a renew still finishing in the store's thread may land between two reads.
        pipe = self.client.pipeline(transaction=True)
        pipe.zscore(f"{P}:live", task_id)
        pipe.hget(f"{P}:task:{task_id}", "lease_until")
        score, field = pipe.execute()
        assert float(cast("bytes", field)) == score
        return cast("float", score)

    def lease_ends(self) -> float:
        last = self.client.zrange(f"{P}:live", -1, -1, withscores=True)
        return cast("list[tuple[bytes, float]]", last)[0][1]

    def task_count(self) -> int:
        return len(cast("list[bytes]", self.client.keys(f"{P}:task:*")))

    def owned(self, owner: str) -> set[str]:
        return {i.decode() for i in cast("set[bytes]", self.client.smembers(f"{P}:owned:{owner}"))}

    def live_count(self) -> int:
        return int(self.client.zcard(f"{P}:live"))

    def ran_by(self, task_id: str) -> tuple[str | None, str | None]:
        found = cast(
            "list[bytes | None]", self.client.hmget(f"{P}:task:{task_id}", "owner", "ran_by")
        )
        return (_text(found[0]), _text(found[1]))

    def age(self, task_id: str, seconds: float) -> None:
        self.client.zincrby(f"{P}:settled", -seconds, task_id)

    def corrupt(self, task_id: str, field: str, text: str) -> None:
        self.client.hset(f"{P}:task:{task_id}", field, text)

    def forge_figures(self, owner: str, text: str | bytes, until: float) -> None:
        self.client.hset(f"{P}:processes", owner, text)
        self.client.zadd(f"{P}:processes:until", {owner: until})

    def published(self) -> list[str]:
        owners = sorted(
            o.decode() for o in cast("list[bytes]", self.client.hkeys(f"{P}:processes"))
        )
        assert self.client.zcard(f"{P}:processes:until") == len(owners)
        return owners

    def published_until(self, owner: str) -> float:
        return cast("float", self.client.zscore(f"{P}:processes:until", owner))

    def key_fields(self, key: str) -> dict[str, Any] | None:
        found = cast("dict[bytes, bytes]", self.client.hgetall(f"{P}:key:{key}"))
        fields: dict[str, Any] = {k.decode(): v.decode() for k, v in found.items()}
        for name in ("claimed_at", "settled_at"):
            if name in fields:
                fields[name] = float(fields[name])
        return fields or None

    def set_key_field(self, key: str, field: str, value: Any) -> None:
        self.client.hset(f"{P}:key:{key}", field, value)


__all__ = [
    "EXPIRY",
    "RESULT_MAX",
    "SETTINGS",
    "Durable",
    "LaneFigures",
    "OpenStore",
    "P",
    "RedisDatabase",
    "RedisStore",
    "SqliteFile",
    "SqliteStore",
    "figures",
    "query",
    "record",
    "sleep_until",
]
