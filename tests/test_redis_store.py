"""`RedisStore`: a real Redis shared by stores of different owners (processes, hosts)."""

from __future__ import annotations

import json
import logging
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timezone
from typing import Any, cast

import anyio
import pytest
import redis

from fastapi_offload._errors import ConfigError, StoreUnavailable
from fastapi_offload._models import TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.base import Orphan, Store
from fastapi_offload.stores.peers import EXPIRY_LEASES, RESULT_MAX, LaneFigures, ProcessFigures
from fastapi_offload.stores.redis import RedisStore, _masked

# The session's Redis (found, started from PATH, or skipped / failed under
# OFFLOAD_REQUIRE_SERVICES=1): the backend tests' fixture, reused.
from tests.backends.conftest import redis_base_url as redis_base_url

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

OpenStore = Callable[..., Awaitable[RedisStore]]
SETTINGS: dict[str, Any] = {"lease": 60.0, "capacity": 100, "retention": 3600.0}
P = "fastapi_offload"


def record(task_id: str, state: TaskState = TaskState.PENDING, **fields: Any) -> TaskRecord:
    task = TaskRecord(task_id, "jobs.f", "thread", print, (), {}, None, 0, 1.0, state=state)
    for name, value in fields.items():
        setattr(task, name, value)
    if state.finished:
        task.finished_at = time.time()
    return task


async def sleep_until(moment: float) -> None:
    """Leases run out on the clock: there is no event to wait for."""
    await anyio.sleep(max(0.0, moment - time.time()) + 0.01)


async def wait_for_leases_to_expire(client: redis.Redis) -> None:
    last = client.zrange(f"{P}:live", -1, -1, withscores=True)
    await sleep_until(cast("list[tuple[bytes, float]]", last)[0][1])


@pytest.fixture
def url(redis_base_url: str) -> Iterator[str]:
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


@pytest.fixture
async def open_store(url: str) -> AsyncIterator[OpenStore]:
    opened: list[RedisStore] = []

    async def open_store(owner: str = "a", at: str = url, **settings: Any) -> RedisStore:
        store = RedisStore(at, owner=owner, **{**SETTINGS, **settings})
        await store.open()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


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


async def test_the_redis_store_implements_the_protocol(open_store: OpenStore) -> None:
    store: Store = await open_store()  # mypy checks the protocol
    assert store.durable and "redis://" in repr(store) and "'a'" in repr(store)


def test_a_password_is_masked_in_what_the_store_says() -> None:
    assert _masked("redis://:s3cret@h:6379/2") == "redis://:***@h:6379/2"
    assert _masked("rediss://user:s3cret@h/0") == "rediss://user:***@h/0"
    assert _masked("redis://h:6379/0") == "redis://h:6379/0"
    store = RedisStore("redis://:s3cret@h/1", owner="a", **SETTINGS)
    assert "s3cret" not in repr(store) and "***" in repr(store)


async def test_what_one_process_flushed_another_reads(open_store: OpenStore) -> None:
    a, b = await open_store("a"), await open_store("b")
    a.put(record("live", TaskState.RUNNING, started_at=time.time(), attempts=1))
    a.put(record("done", TaskState.FAILED, error="ValueError('x')"))
    await a.flush()
    assert (info := await b.get("live")) is not None
    assert info.state is TaskState.RUNNING and info.attempts == 1 and info.lane == "thread"
    assert (info := await b.get("done")) is not None and info.error == "ValueError('x')"
    assert info == (await a.get("done"))  # times read back to the last digit
    assert [info.id for info in await b.active()] == ["live"]
    assert await b.get("never") is None and len(a) == 2


async def test_the_task_owner_travels_through_redis(open_store: OpenStore) -> None:
    a, b = await open_store("a"), await open_store("b")
    a.put(record("mine", TaskState.SUCCEEDED, owner="user-42"))
    a.put(record("nobodys", TaskState.SUCCEEDED))
    await a.flush()
    assert (info := await b.get("mine")) is not None and info.owner == "user-42"
    assert (info := await b.get("nobodys")) is not None and info.owner is None


async def test_live_records_are_answered_from_memory(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store()
    live = record("a")
    store.put(live)
    live.state = TaskState.RUNNING  # held by reference: current without a put
    monkeypatch.setattr(store, "_read", lambda ids: pytest.fail("queried Redis"))
    assert (info := await store.get("a")) is not None and info.state is TaskState.RUNNING
    monkeypatch.undo()  # `active` reads the other owners' rows, and overlays this one's
    assert [info.state for info in await store.active()] == [TaskState.RUNNING]


async def test_an_evicted_task_is_forgotten(open_store: OpenStore, client: redis.Redis) -> None:
    a, b = await open_store("a"), await open_store("b")
    a.put(record("x"))
    await a.flush()
    a.evict("x")
    await a.flush()
    assert await a.get("x") is None and await b.get("x") is None and len(a) == 0
    await a.renew()  # which also drops an owner with no live task from the owners set
    assert sorted(client.keys()) == [f"{P}:meta".encode()]


async def test_finished_rows_are_pruned_by_capacity_oldest_first(
    open_store: OpenStore, client: redis.Redis
) -> None:
    a, b = await open_store("a", capacity=3), await open_store("b")
    a.put(record("live"))
    for i in range(5):
        a.put(record(f"done{i}", TaskState.SUCCEEDED))
    await a.flush()
    assert await b.get("done0") is None and await b.get("done1") is None
    assert await b.get("done2") is not None and await b.get("live") is not None
    assert len(a) == 4 and len(client.keys(f"{P}:task:*")) == 4


async def test_pruning_by_capacity_waits_for_a_5_percent_slack(
    open_store: OpenStore, client: redis.Redis
) -> None:
    a = await open_store("a", capacity=100)
    for i in range(105):  # 5 over: within the slack
        a.put(record(f"d{i}", TaskState.SUCCEEDED))
    await a.flush()
    assert client.zcard(f"{P}:settled") == 105
    a.put(record("d105", TaskState.SUCCEEDED))
    await a.flush()
    assert client.zcard(f"{P}:settled") == 100 and await a.get("d5") is None


async def test_finished_rows_are_pruned_by_retention(
    open_store: OpenStore, client: redis.Redis
) -> None:
    a, b = await open_store("a", retention=3600.0), await open_store("b")
    a.put(record("old", TaskState.SUCCEEDED))
    a.put(record("live"))
    await a.flush()
    client.zincrby(f"{P}:settled", -7200, "old")  # finished two hours ago
    a.put(record("new", TaskState.SUCCEEDED))
    await a.flush()
    assert await b.get("old") is None and not client.exists(f"{P}:task:old")
    assert await b.get("new") is not None and await b.get("live") is not None


async def test_expired_leases_are_reclaimed_exactly_once_by_concurrent_reclaimers(
    open_store: OpenStore, client: redis.Redis
) -> None:
    dead = await open_store("worker-1", lease=0.05)
    ids = {f"t{i}" for i in range(200)}
    for task_id in ids:
        dead.put(record(task_id, TaskState.RUNNING))
    await dead.flush()
    await wait_for_leases_to_expire(client)
    stores = [await open_store(f"r{i}", capacity=1000) for i in range(4)]
    results: dict[str, list[Orphan]] = {}

    async def reclaim(store: RedisStore) -> None:
        results[store.owner] = await store.reclaim()

    async with anyio.create_task_group() as group:  # four threads, four connections
        for store in stores:
            group.start_soon(reclaim, store)
    claimed = [orphan.info.id for orphans in results.values() for orphan in orphans]
    assert sorted(claimed) == sorted(ids)  # each by exactly one reclaimer
    orphan = next(o for orphans in results.values() for o in orphans if o.info.id == "t0")
    assert not orphan.requeued and orphan.info.state is TaskState.INTERRUPTED
    assert orphan.info.error is not None
    assert "(worker-1) stopped before it finished" in orphan.info.error
    assert "lease ran out at" in orphan.info.error and "@task(requeue=True)" in orphan.info.error
    a = stores[0]
    assert (info := await a.get("t0")) is not None and info == orphan.info
    assert await a.reclaim() == [] and await stores[1].reclaim() == [] and await a.active() == []
    assert client.zcard(f"{P}:live") == 0 and not client.exists(f"{P}:owned:worker-1")


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


async def test_a_requeue_task_is_reclaimed_for_a_run_by_the_claimer(
    open_store: OpenStore, client: redis.Redis
) -> None:
    dead = await open_store("worker-1", lease=0.05)
    call = record("r", requeue=True, payload=b"pickled\x00call", timeout=5.0, retries=2)
    dead.put(call)
    await dead.flush()
    await wait_for_leases_to_expire(client)
    a, b = await open_store("a"), await open_store("b")
    assert await a.reclaim() == [
        Orphan(call.info(), requeued=True, payload=b"pickled\x00call", timeout=5.0, retries=2)
    ]
    owner, state = client.hmget(f"{P}:task:r", "owner", "state")
    assert owner == b"a" and state == b"pending"
    assert (client.zscore(f"{P}:live", "r") or 0) > time.time() + 30
    assert client.smembers(f"{P}:owned:a") == {b"r"}
    assert await b.reclaim() == []  # a holds it now, under a fresh lease


async def test_a_stalled_owner_does_not_take_back_a_reclaimed_task(
    open_store: OpenStore, client: redis.Redis
) -> None:
    # Its event loop froze past the lease: another process reclaimed the task and runs
    # it again. The stalled process's late writes must not overwrite that claim.
    stalled = await open_store("worker-1", lease=0.05)
    call = record("r", TaskState.RUNNING, requeue=True, payload=b"pickled call")
    stalled.put(call)
    await stalled.flush()
    await wait_for_leases_to_expire(client)
    claimer = await open_store("a")
    assert [o.info.id for o in await claimer.reclaim()] == ["r"]
    call.state = TaskState.SUCCEEDED
    stalled.put(call)
    await stalled.flush()
    assert client.hmget(f"{P}:task:r", "owner", "state") == [b"a", b"pending"]
    assert client.zscore(f"{P}:live", "r") is not None and not client.zscore(f"{P}:settled", "r")


async def test_a_stalled_owner_does_not_revive_a_task_settled_meanwhile(
    open_store: OpenStore, client: redis.Redis
) -> None:
    # Found in review: a row with no owner (interrupted) took the stalled process's write.
    stalled = await open_store("worker-1", lease=0.05)
    call = record("x", TaskState.RUNNING)
    stalled.put(call)
    await stalled.flush()
    await wait_for_leases_to_expire(client)
    claimer = await open_store("a")
    assert [o.info.state for o in await claimer.reclaim()] == [TaskState.INTERRUPTED]
    stalled.put(call)  # still running, as far as the stalled process knows
    call.state = TaskState.SUCCEEDED
    stalled.put(call)
    await stalled.flush()
    assert client.hmget(f"{P}:task:x", "owner", "state") == [None, b"interrupted"]


async def test_a_claim_whose_reply_was_lost_is_returned_by_the_next_reclaim(
    open_store: OpenStore, client: redis.Redis
) -> None:
    # Found in review: the script claimed the row, the caller never saw it, and the row
    # was renewed forever without running.
    dead = await open_store("worker-1", lease=0.05)
    dead.put(record("r", TaskState.RUNNING, requeue=True, payload=b"call"))
    await dead.flush()
    await wait_for_leases_to_expire(client)
    claimer = await open_store("a")
    assert [o.info.id for o in await claimer.reclaim()] == ["r"]  # ... and then lost
    again = await claimer.reclaim()
    assert [(o.info.id, o.requeued, o.payload) for o in again] == [("r", True, b"call")]


async def test_a_flush_after_close_fails_at_once(open_store: OpenStore) -> None:
    store = await open_store("a")
    await store.close()
    with anyio.fail_after(2), pytest.raises(StoreUnavailable, match="not open"):
        await store.flush()


async def test_a_url_that_decodes_responses_is_refused(url: str) -> None:
    store = RedisStore(f"{url}?decode_responses=True", owner="a", **SETTINGS)
    with pytest.raises(ConfigError, match="decode_responses"):
        await store.open()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="boot ids: Linux only")
async def test_a_gone_owner_of_this_host_loses_its_lease_at_once_and_a_foreign_one_keeps_it(
    open_store: OpenStore, client: redis.Redis
) -> None:
    # As with SQLite: an owner id formed by a process that then died, and the same id
    # from another host; only this host's is judged gone, whatever the leases say.
    form = "from fastapi_offload.stores.lease_owner import new_owner_id; print(new_owner_id())"
    gone = (await anyio.run_process([sys.executable, "-c", form])).stdout.decode().strip()
    foreign = "elsewhere" + gone[gone.index(":") :]
    for owner, task_id in [(gone, "dead-here"), (foreign, "dead-elsewhere")]:
        store = await open_store(owner, lease=60.0)
        store.owner = owner  # as that process (open gives a store of this one its own id)
        store.put(record(task_id, TaskState.RUNNING))
        await store.flush()
    assert client.smembers(f"{P}:owners") == {gone.encode(), foreign.encode()}
    b = await open_store("b")
    orphans = await b.reclaim()
    assert [o.info.id for o in orphans] == ["dead-here"], "not reclaimed before its lease ran out"
    assert orphans[0].info.state is TaskState.INTERRUPTED
    assert f"({gone}) stopped before it finished: its process no longer runs on this host" in (
        orphans[0].info.error or ""
    )
    assert (info := await b.get("dead-elsewhere")) is not None and info.state is TaskState.RUNNING
    assert cast("float", client.zscore(f"{P}:live", "dead-elsewhere")) > time.time() + 50
    # The gone owner's bookkeeping goes with its tasks; the foreign one's stays.
    assert client.smembers(f"{P}:owners") == {foreign.encode()}
    assert not client.exists(f"{P}:owned:{gone}")
    assert await b.reclaim() == []


async def test_an_unexpired_lease_is_not_reclaimed(open_store: OpenStore) -> None:
    alive = await open_store("worker-1", lease=60.0)
    alive.put(record("x", TaskState.RUNNING))
    await alive.flush()
    b = await open_store("b")
    assert await b.reclaim() == []
    assert (info := await b.get("x")) is not None and info.state is TaskState.RUNNING


async def test_renew_keeps_a_lease_alive_past_its_first_expiry(
    open_store: OpenStore, client: redis.Redis
) -> None:
    a = await open_store("a", lease=0.5)
    a.put(record("x", TaskState.RUNNING))
    await a.flush()
    first_expiry = client.zscore(f"{P}:live", "x") or 0.0
    b = await open_store("b")
    async with anyio.create_task_group() as group:

        async def heartbeat() -> None:  # as the runtime does, well within the lease
            while True:
                await a.renew()
                await anyio.sleep(0.05)

        group.start_soon(heartbeat)
        await sleep_until(first_expiry + 0.5)  # a whole lease past the first expiry
        assert await b.reclaim() == []
        group.cancel_scope.cancel()
    renewed = client.zscore(f"{P}:live", "x") or 0.0
    assert renewed > first_expiry + 0.5
    assert float(client.hget(f"{P}:task:x", "lease_until") or 0) == renewed


async def test_the_tasks_of_a_killed_process_are_interrupted(
    open_store: OpenStore, url: str, client: redis.Redis
) -> None:
    code = f"""
import asyncio, os, signal
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.redis import RedisStore

async def main():
    store = RedisStore({url!r}, owner="killed", lease=0.2, capacity=10, retention=60)
    await store.open()
    store.put(TaskRecord("k", "jobs.f", "thread", print, (), {{}}, None, 0, 1.0))
    await store.flush()
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""
    process = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    store = await open_store("a")
    await wait_for_leases_to_expire(client)  # its 0.2 s lease, from the row it committed
    orphans = await store.reclaim()
    assert [orphan.info.id for orphan in orphans] == ["k"]
    assert orphans[0].info.error is not None and "(killed)" in orphans[0].info.error
    assert (info := await store.get("k")) is not None and info.state is TaskState.INTERRUPTED


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
    assert _masked(where) in str(caught.value)


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


async def test_a_corrupted_row_reads_as_unknown_with_a_warning(
    open_store: OpenStore, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await open_store("a"), await open_store("b")
    a.put(record("bad", TaskState.SUCCEEDED))
    a.put(record("live"))
    a.put(record("gone", TaskState.SUCCEEDED))
    a.put(record("result", TaskState.SUCCEEDED, result="[1, 2]"))
    await a.flush()
    client.hset(f"{P}:task:bad", "state", "nonsense")
    client.hset(f"{P}:task:live", "created_at", "garbage")
    client.hdel(f"{P}:task:gone", "name")
    client.hset(f"{P}:task:result", "result", "[1, 2")
    with caplog.at_level(logging.WARNING, logger="fastapi_offload"):
        assert await b.get("bad") is None and await b.get("gone") is None
        assert await b.get("result") is None and await b.active() == []
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("status of task bad: " in m for m in warned)
    assert any("status of task live: " in m for m in warned)
    assert any("status of task gone: " in m for m in warned)
    assert any("status of task result: " in m for m in warned)


async def test_close_writes_what_is_left(open_store: OpenStore, client: redis.Redis) -> None:
    a = await open_store("a")
    a.put(record("x", TaskState.SUCCEEDED))
    await a.close()
    assert client.hget(f"{P}:task:x", "state") == b"succeeded"
    with pytest.raises(StoreUnavailable, match="not open"):
        await a.flush()


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


# -- what the processes sharing the Redis tell each other (issue 19) --------------------


def figures(host: str, pid: int, running: int = 0) -> ProcessFigures:
    lanes = (LaneFigures("thread", 4, running, 0), LaneFigures("process", 2, 0, 3))
    return ProcessFigures(host, pid, started_at=time.time() - 60, at=time.time(), lanes=lanes)


async def test_each_process_publishes_its_figures_until_they_expire(
    open_store: OpenStore, client: redis.Redis
) -> None:
    a = await open_store("h1:11:x", lease=0.3)
    b = await open_store("h2:22:y", lease=0.3)
    await a.renew(figures("h1", 11, running=1))
    await b.renew(figures("h2", 22))
    found = {p.label: p for p in await b.processes()}
    assert {label: p.here for label, p in found.items()} == {"h1:11": False, "h2:22": True}
    assert found["h1:11"].lanes == (LaneFigures("thread", 4, 1, 0), LaneFigures("process", 2, 0, 3))
    until = client.zscore(f"{P}:processes:until", "h1:11:x") or 0.0
    assert time.time() < until <= time.time() + EXPIRY_LEASES * 0.3
    # b stops renewing (killed): gone from every reader after EXPIRY_LEASES leases, and
    # deleted by the next process that publishes, so the hash stays bounded.
    await anyio.sleep(0.3 * EXPIRY_LEASES + 0.05)
    await a.renew(figures("h1", 11))
    assert [p.label for p in await a.processes()] == ["h1:11"]
    assert client.hkeys(f"{P}:processes") == [b"h1:11:x"]
    await a.close()  # a clean stop: gone at once
    assert client.hkeys(f"{P}:processes") == [] and client.zcard(f"{P}:processes:until") == 0


async def test_published_figures_are_read_as_untrusted_input(
    open_store: OpenStore, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    a = await open_store("h1:11:x")
    await a.renew(figures("h1", 11))
    forged = {
        "long": json.dumps({"host": "x" * 5000}).encode(),  # past FIGURES_MAX: not even sent
        "pickle": b"\x80\x04\x95cos\nsystem\n.",  # bytes of a pickle, never unpickled
        "types": json.dumps({"host": "h", "pid": -1, "started_at": 1, "at": 1}).encode(),
    }
    for owner, text in forged.items():
        client.hset(f"{P}:processes", owner, text)
        client.zadd(f"{P}:processes:until", {owner: time.time() + 60})
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        assert [p.label for p in await a.processes()] == ["h1:11"]
    assert len([r for r in caplog.records if "cannot read process" in r.message]) == 2


async def test_recent_tasks_name_their_process_and_come_cut(
    open_store: OpenStore, client: redis.Redis
) -> None:
    a, b = await open_store("h1:11:x"), await open_store("h2:22:y")
    a.put(record("done", TaskState.SUCCEEDED, result=json.dumps({"k": "v" * 5000})))
    b.put(record("live", TaskState.RUNNING, error="E" * 9000))
    await a.flush()
    await b.flush()
    found = {task.id: task for task in await a.recent(10)}
    assert {i: (t.process, t.here, t.state) for i, t in found.items()} == {
        "done": ("h1:11", True, "succeeded"),
        "live": ("h2:22", False, "running"),
    }
    assert found["done"].result is not None and len(found["done"].result) == RESULT_MAX
    assert found["done"].result.endswith("…") and found["live"].error == "E" * 1999 + "…"
    # Once settled, the hash still names the process that ran it (its lease is cleared).
    assert client.hmget(f"{P}:task:done", "owner", "ran_by") == [None, b"h1:11:x"]
