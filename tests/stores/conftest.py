"""The store tests' one store fixture: `durable`, a store of each durable kind (a real
SQLite file, a real Redis), opened under as many owners (processes) as a test needs.

A behaviour both durable stores share is written once, against `durable`; a test that
holds for the memory store too asks for it with
`@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)`, and a module of
one store's own tests sets `STORE_KINDS` (`["sqlite"]`, `[REDIS]`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from fastapi_offload.stores.memory import MemoryStore

# The session's Redis (found, started from PATH, or skipped / failed under
# OFFLOAD_REQUIRE_SERVICES=1): the backend tests' fixture, reused.
from tests.backends.conftest import redis_base_url as redis_base_url

from .helpers import SETTINGS, Durable, RedisDatabase, RedisStore, SqliteFile, SqliteStore

REDIS = pytest.param("redis", marks=pytest.mark.redis)
KINDS = ["sqlite", REDIS]
KINDS_AND_MEMORY = ["memory", *KINDS]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "offload.db"


@pytest.fixture
def url(redis_base_url: str) -> Iterator[str]:
    """Database 13 of the session's Redis, empty (14: for tests of another database)."""
    clients = [redis.Redis.from_url(f"{redis_base_url}/{db}") for db in (13, 14)]
    for client in clients:
        client.flushdb()
    yield f"{redis_base_url}/13"
    for client in clients:
        client.flushdb()
        client.close()


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    """Redis as another process sees it."""
    with redis.Redis.from_url(url) as client:
        yield client


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "durable" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        if "durable" in str(mark.args[0]):
            return  # the test names its kinds
    metafunc.parametrize("durable", getattr(metafunc.module, "STORE_KINDS", KINDS), indirect=True)


@pytest.fixture
async def durable(request: pytest.FixtureRequest, db: Path) -> AsyncIterator[Durable]:
    opened: list[SqliteStore | RedisStore | MemoryStore] = []
    kind = request.param
    at: Any = request.getfixturevalue("url") if kind == "redis" else db

    async def open_store(owner: str = "a", **settings: Any) -> Any:
        given = {**SETTINGS, **settings}
        store: SqliteStore | RedisStore | MemoryStore
        if kind == "memory":
            store = MemoryStore(given["capacity"], key_ttl=given.get("key_ttl", 24 * 3600.0))
        elif kind == "redis":
            store = RedisStore(given.pop("at", at), owner=owner, **given)
        else:
            store = SqliteStore(str(given.pop("at", at)), owner=owner, **given)
        await store.open()
        opened.append(store)
        return store

    if kind == "redis":
        yield RedisDatabase(open_store, at, request.getfixturevalue("client"))
    else:
        found = SqliteFile(open_store, db)
        found.kind = kind  # "memory": no file behind it, only `open`
        yield found
    for store in opened:
        await store.close()
