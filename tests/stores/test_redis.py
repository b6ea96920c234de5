"""`RedisStore`'s own: its key layout, scripts, connection and errors (what it shares with
the SQLite store is in `test_durable.py`)."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, cast

import anyio
import pytest
import redis

from fastapi_offload._errors import ConfigError, StoreUnavailable
from fastapi_offload._models import TaskState
from fastapi_offload.stores.redis import RedisStore
from fastapi_offload.stores.redis_link import masked

from .conftest import REDIS
from .helpers import SETTINGS, Durable, OpenStore, P, record, sleep_until

pytestmark = [pytest.mark.anyio, pytest.mark.redis]
STORE_KINDS = [REDIS]  # the `durable` fixture's


async def wait_for_leases_to_expire(client: redis.Redis) -> None:
    last = client.zrange(f"{P}:live", -1, -1, withscores=True)
    await sleep_until(cast("list[tuple[bytes, float]]", last)[0][1])


@pytest.fixture
def open_store(durable: Durable) -> OpenStore:
    return durable.open


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A server that answers every command as Redis does a wrong password."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if select.select([server], [], [], 0.05)[0]:
                with server.accept()[0] as conn:
                    conn.recv(65536)
                    conn.sendall(b"-WRONGPASS invalid username-password pair\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


class Proxy:
    """A TCP proxy to Redis that can be stopped and started again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._stop = threading.Event()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._stop.clear()
        self._sockets = [server]
        self._spawn(self._accept, server)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for sock in self._sockets:
            sock.close()
        self._threads, self._sockets = [], []

    def _spawn(self, target: Callable[..., None], *args: socket.socket) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            if select.select([server], [], [], 0.05)[0]:
                near = server.accept()[0]
                far = socket.create_connection(self.target)
                self._sockets += (near, far)
                self._spawn(self._pump, near, far)
                self._spawn(self._pump, far, near)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                if select.select([source], [], [], 0.05)[0]:
                    if not (data := source.recv(65536)):
                        break
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()  # the client sees the connection drop, as when Redis dies


def test_a_password_is_masked_in_what_the_store_says() -> None:
    assert masked("redis://:s3cret@h:6379/2") == "redis://:***@h:6379/2"
    assert masked("rediss://user:s3cret@h/0") == "rediss://user:***@h/0"
    assert masked("redis://h:6379/0") == "redis://h:6379/0"
    store = RedisStore("redis://:s3cret@h/1", owner="a", **SETTINGS)
    assert "s3cret" not in repr(store) and "***" in repr(store)


async def test_the_lease_expiry_is_written_as_utc_text(
    open_store: OpenStore, client: redis.Redis
) -> None:
    dead = await open_store("worker-1")
    for task_id, requeue in (("x", False), ("y", True)):  # y: requeue, but no saved call
        dead.put(record(task_id, TaskState.RUNNING, requeue=requeue))
    await dead.flush()
    client.zadd(f"{P}:live", {"x": 1709164800.999, "y": 951782400.5})  # two leap days
    orphans = {o.info.id: o for o in await (await open_store("b")).reclaim()}
    assert orphans["x"].info.error is not None and orphans["y"].info.error is not None
    assert "lease ran out at 2024-02-29 00:00:00 UTC" in orphans["x"].info.error
    assert "lease ran out at 2000-02-29 00:00:00 UTC" in orphans["y"].info.error
    assert "because no copy of its call was saved" in orphans["y"].info.error
    for moment in (0.0, 1234567890.0, 1582934399.9, 1600000000.5):
        text = datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        client.hset(f"{P}:task:x", mapping={"owner": "w", "state": "running"})
        client.zadd(f"{P}:live", {"x": moment})
        [orphan] = await (await open_store(f"c{moment}")).reclaim()
        assert orphan.info.error is not None and f"at {text} UTC" in orphan.info.error


async def test_a_url_that_decodes_responses_is_refused(url: str) -> None:
    store = RedisStore(f"{url}?decode_responses=True", owner="a", **SETTINGS)
    with pytest.raises(ConfigError, match="decode_responses"):
        await store.open()


@pytest.mark.parametrize(
    ("where", "meta", "says"),
    [
        ("redis://:s3cret@127.0.0.1:1/13", None, "cannot be reached or used (ConnectionError"),
        ("{base}/13", "user", "AuthenticationError"),
        ("{base}/13", {"version": 2}, "layout version b'2', not one this fastapi-offload"),
        ("{base}/13", {"version": "x"}, "layout version b'x'"),
        ("{base}/13", "a string", "WRONGTYPE"),
        ("http://127.0.0.1/13", None, "not a usable Redis URL"),
    ],
)
async def test_a_redis_that_cannot_be_used_is_a_config_error(
    url: str, client: redis.Redis, refusing_port: int, where: str, meta: Any, says: str
) -> None:
    where = where.format(base=url.rpartition("/")[0])
    if meta == "user":  # a server that refuses the password (the shared Redis has none)
        where, meta = f"redis://u:s3cret@127.0.0.1:{refusing_port}/13", None
    if isinstance(meta, dict):
        client.hset(f"{P}:meta", mapping=meta)
    elif meta is not None:
        client.set(f"{P}:meta", meta)
    store = RedisStore(where, owner="a", **SETTINGS)
    with pytest.raises(ConfigError, match=r"^store \(OFFLOAD_STORE\) ") as caught:
        await store.open()
    assert says in str(caught.value) and "s3cret" not in str(caught.value)
    assert masked(where) in str(caught.value)


async def test_a_flush_fails_while_redis_is_unreachable_and_works_once_it_is_back(
    open_store: OpenStore, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = redis.Redis.from_url(url).connection_pool.connection_kwargs
    proxy = Proxy((base["host"], base["port"]))
    proxy.start()
    try:
        a = await open_store("a", at=f"redis://127.0.0.1:{proxy.port}/13", probe_every=0.1)
        a.put(record("before", TaskState.SUCCEEDED))
        await a.flush()
        proxy.stop()
        a.put(record("x"))
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="could not record the task") as caught:
            await a.flush()
        assert time.monotonic() - started < 5  # fails fast: a 503, not a hung request
        assert f":{proxy.port}" not in str(caught.value)  # the client is not told the host
        assert f":{proxy.port}/13" in caplog.text  # the log is
        assert "kept to retry" in caplog.text and "'x'" in caplog.text
        # Not found and could not ask are two answers: this one raises.
        with pytest.raises(StoreUnavailable, match="could not read the status of task before"):
            await a.get("before")
        proxy.start()
        await anyio.sleep(0.15)  # the breaker lets a probe through again
        await a.flush()  # the failed batch's row is written with the next one
    finally:
        proxy.stop()
    b = await open_store("b")
    assert await b.get("x") is not None


async def test_a_hash_written_before_results_existed_reads_as_before(
    open_store: OpenStore, client: redis.Redis
) -> None:
    # As an earlier fastapi-offload wrote it (the same layout version): no result,
    # progress or cancel fields, and no cancels set.
    lease_until = time.time() + 60
    client.hset(f"{P}:task:x", mapping={"name": "jobs.f", "lane": "thread", "state": "running",
        "created_at": "1.5", "attempts": "1", "owner": "old", "lease_until": repr(lease_until),
        "handed_off": "0", "requeue": "0", "retries": "0", "retry_delay": "1.0"})  # fmt: skip
    client.zadd(f"{P}:live", {"x": lease_until})
    a = await open_store("a")
    assert (info := await a.get("x")) is not None and info.state is TaskState.RUNNING
    assert (info.created_at, info.result, info.progress, info.progress_message) == (
        1.5, None, None, None
    )  # fmt: skip
    assert await a.request_cancel("x") is True
    assert client.smembers(f"{P}:cancels:old") == {b"x"}


async def test_a_cancel_request_is_kept_on_the_task_and_its_owners_set_until_it_settles(
    open_store: OpenStore, client: redis.Redis
) -> None:
    a, b = await open_store("a"), await open_store("b")
    task = record("x", TaskState.RUNNING)
    a.put(task)
    await a.flush()
    assert await b.request_cancel("x") is True
    task.progress = 0.5
    a.put(task)  # the upsert rewrites the hash: the request must survive it
    await a.flush()
    requested = float(client.hget(f"{P}:task:x", "cancel_requested") or 0)
    assert 0 < requested <= time.time() and client.smembers(f"{P}:cancels:a") == {b"x"}
    task.state = TaskState.CANCELLED
    a.put(task)
    await a.flush()
    assert client.hget(f"{P}:task:x", "cancel_requested") is None
    assert not client.exists(f"{P}:cancels:a") and not client.exists(f"{P}:owned:a")


async def test_a_reclaim_moves_a_cancel_request_to_the_new_owners_set(
    open_store: OpenStore, client: redis.Redis
) -> None:
    dead = await open_store("worker-1", lease=0.05)
    dead.put(record("r", TaskState.RUNNING, requeue=True, payload=b"call"))
    dead.put(record("x", TaskState.RUNNING))
    await dead.flush()
    heir = await open_store("heir")
    assert await heir.request_cancel("r") is True and await heir.request_cancel("x") is True
    await wait_for_leases_to_expire(client)
    assert {o.info.id for o in await heir.reclaim()} == {"r", "x"}
    assert not client.exists(f"{P}:cancels:worker-1")
    assert client.smembers(f"{P}:cancels:heir") == {b"r"}  # x is interrupted: no request
    assert client.hget(f"{P}:task:x", "cancel_requested") is None


async def test_cancel_requests_fail_while_redis_is_unreachable(
    open_store: OpenStore, url: str
) -> None:
    base = redis.Redis.from_url(url).connection_pool.connection_kwargs
    proxy = Proxy((base["host"], base["port"]))
    proxy.start()
    try:
        a = await open_store("a", at=f"redis://127.0.0.1:{proxy.port}/13", probe_every=0.1)
        a.put(record("x"))
        await a.flush()
        proxy.stop()
        with pytest.raises(StoreUnavailable, match=r"could not ask for task x to be cancelled"):
            await a.request_cancel("x")
        with pytest.raises(StoreUnavailable, match=r"could not read the cancel requests"):
            await a.cancel_requests()
        proxy.start()
        await anyio.sleep(0.15)  # the breakers let a probe through again
        assert await a.request_cancel("x") is True and await a.cancel_requests() == ["x"]
    finally:
        proxy.stop()


async def test_the_scripts_are_loaded_again_after_a_script_flush(
    open_store: OpenStore, client: redis.Redis
) -> None:
    a = await open_store("a")
    client.script_flush()  # as after Redis restarted without persistence of scripts
    a.put(record("x", TaskState.SUCCEEDED))
    await a.flush()
    assert client.hget(f"{P}:task:x", "state") == b"succeeded"


async def test_stores_under_other_prefixes_do_not_meet(open_store: OpenStore, url: str) -> None:
    a, b = await open_store("a"), await open_store("b", prefix="other")
    a.put(record("x"))
    await a.flush()
    assert await b.get("x") is None and await b.active() == []


async def test_an_evicted_task_leaves_no_key_behind(
    open_store: OpenStore, client: redis.Redis
) -> None:
    a = await open_store("a")
    a.put(record("x"))
    await a.flush()
    a.evict("x")
    await a.flush()
    await a.renew()  # which also drops an owner with no live task from the owners set
    assert sorted(client.keys()) == [f"{P}:meta".encode()]


async def test_a_hash_without_a_required_field_reads_as_unknown_with_a_warning(
    open_store: OpenStore, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await open_store("a"), await open_store("b")
    a.put(record("gone", TaskState.SUCCEEDED))
    await a.flush()
    client.hdel(f"{P}:task:gone", "name")  # SQLite's NOT NULL forbids this there
    with caplog.at_level(logging.WARNING, logger="fastapi_offload"):
        assert await b.get("gone") is None
    assert "status of task gone: " in caplog.text


async def test_a_task_is_written_as_layout_version_1_says(
    open_store: OpenStore, client: redis.Redis
) -> None:
    # The upsert script takes a batch as JSON: what lands in the hash must stay what the
    # layout says (text fields, `repr` of floats, 1/0 flags, absent for None, raw bytes
    # for the saved call), so that processes of other versions read it.
    a = await open_store("a")
    live = record("r", TaskState.RUNNING, requeue=True, payload=b"\x00\xffcall", timeout=2.5)
    live.attempts, live.error, live.progress = 1, 'a "quote"\n\x00é😀', 1
    done = record("d", TaskState.SUCCEEDED, result='{"k": [1, 2.5]}', owner="user-42")
    a.put(live)
    a.put(done)
    await a.flush()
    fields = client.hgetall(f"{P}:task:r")
    lease_until = float(fields.pop(b"lease_until"))
    assert fields.pop(b"created_at") == repr(live.created_at).encode()
    assert fields == {
        b"name": b"jobs.f", b"lane": b"thread", b"state": b"running", b"attempts": b"1",
        b"error": 'a "quote"\n\x00é😀'.encode(), b"owner": a.owner.encode(),
        b"handed_off": b"0", b"requeue": b"1", b"payload": b"\x00\xffcall", b"timeout": b"2.5",
        b"retries": b"0", b"retry_delay": b"1.0", b"progress": b"1", b"ran_by": a.owner.encode(),
    }  # fmt: skip
    assert client.zscore(f"{P}:live", "r") == lease_until
    fields = client.hgetall(f"{P}:task:d")
    settled_at = float(fields.pop(b"settled_at"))
    assert fields.pop(b"finished_at") == repr(done.finished_at).encode()
    assert fields.pop(b"created_at") == repr(done.created_at).encode()
    assert fields == {
        b"name": b"jobs.f", b"lane": b"thread", b"state": b"succeeded", b"attempts": b"0",
        b"handed_off": b"0", b"requeue": b"0", b"retries": b"0", b"retry_delay": b"1.0",
        b"result": b'{"k": [1, 2.5]}', b"task_owner": b"user-42", b"ran_by": a.owner.encode(),
    }  # fmt: skip
    assert client.zscore(f"{P}:settled", "d") == settled_at
