"""The saved call of a `requeue=True` task is input: a row in a shared Redis or in the
SQLite file can be written by someone else. Nothing is unpickled unless signed with the
app's key, and nothing runs that this process did not declare `requeue=True`."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import pickle
import stat
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from fastapi_offload import ConfigError, NotOffloadable, Offload, TaskState, task
from fastapi_offload._call_key import load_key
from fastapi_offload._config import OffloadConfig
from fastapi_offload._record import TaskRecord
from fastapi_offload._saved_call import MAGIC, SavedCalls, Untrusted
from fastapi_offload.core.lifecycle import build_store
from tests.backends.conftest import redis_base_url as redis_base_url  # the fixture

from .apps import jobs
from .conftest import StartServer

KEY = b"k" * 32
SETTINGS: dict[str, Any] = {
    "lane": "thread",
    "timeout": 5.0,
    "retries": 2,
    "retry_delay": 0.5,
    "keep_result": True,
    "retry_backoff": False,
    "retry_on": ["builtins.OSError"],
}


@task(requeue=True)
def declared(*args: Any, **kwargs: Any) -> None:
    """Declared safe to run again."""


def undeclared(*args: Any, **kwargs: Any) -> None:
    """Never declared requeue=True."""


class Planted:
    """What an attacker writes: unpickling it runs `touch`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def dump(task_id: str, func: Any, *args: Any, **kwargs: Any) -> bytes:
    return SavedCalls(KEY).dump(task_id, func, args=args, kwargs=kwargs, **SETTINGS)


def test_plain_json_arguments_are_saved_as_json_and_load_back() -> None:
    saved = dump("t1", declared, 1, "two", [3.5, None], flag=True, nested={"a": [1]})
    assert saved.startswith(MAGIC) and b"pickled" not in saved and b'"two"' in saved
    call = SavedCalls(KEY).load("t1", saved)
    assert call.func is declared
    assert call.args == (1, "two", [3.5, None])
    assert call.kwargs == {"flag": True, "nested": {"a": [1]}}
    assert (call.lane, call.timeout, call.retries, call.retry_delay) == ("thread", 5.0, 2, 0.5)
    assert (call.keep_result, call.retry_backoff, call.retry_on) == (
        True,
        False,
        ("builtins.OSError",),
    )
    assert (call.after, call.owner) == ((), None)
    extra = {"after": ["t1"], "owner": "user-7"}
    followed = SavedCalls(KEY).dump("t2", declared, args=(), kwargs={}, **SETTINGS, **extra)
    loaded = SavedCalls(KEY).load("t2", followed)
    assert (loaded.after, loaded.owner) == (("t1",), "user-7")  # kept for a rerun


@pytest.mark.parametrize(
    "argument",
    [(1, 2), {1: "int key"}, datetime.date(2026, 12, 5), TaskState.RUNNING, float("nan")],
    ids=["tuple", "int-key", "date", "str-enum", "nan"],
)
def test_what_json_would_change_is_pickled_and_signed(argument: Any) -> None:
    # JSON would give back a list, a str key, nothing, a plain str: not the same call.
    saved = dump("t1", declared, argument)
    assert b'"pickled":true' in saved
    [loaded] = SavedCalls(KEY).load("t1", saved).args
    assert type(loaded) is type(argument)
    assert loaded == argument or loaded != loaded  # nan


def test_a_plain_pickle_in_the_row_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for planted in (
        pickle.dumps((Planted(marker), (), {})),  # what older versions saved
        MAGIC + b"0" * 64 + b":" + b'{"func":"x","pickled":true}\n' + pickle.dumps(Planted(marker)),
    ):
        with pytest.raises(Untrusted):
            SavedCalls(KEY).load("t1", planted)
    assert not marker.exists()


def test_a_changed_call_or_another_tasks_call_does_not_verify() -> None:
    saved = dump("t1", declared, 1)
    with pytest.raises(Untrusted, match="signature does not match"):
        SavedCalls(KEY).load("t1", saved.replace(b"[1]", b"[2]"))
    with pytest.raises(Untrusted, match="copied from another task"):
        SavedCalls(KEY).load("t2", saved)  # a valid call copied into another row
    with pytest.raises(Untrusted, match="signature does not match"):
        SavedCalls(b"another key of 32 bytes........").load("t1", saved)


def signed(task_id: str, body: bytes) -> bytes:
    """`body` signed with `KEY` as someone holding the key would sign it."""
    context = b"fastapi-offload call\0" + task_id.encode() + b"\0"
    mac = hmac.new(KEY, context + body, hashlib.sha256).hexdigest()
    return MAGIC + mac.encode() + b":" + body


def test_a_signed_call_naming_an_undeclared_function_is_refused(tmp_path: Path) -> None:
    # Even with the key (a process of this app wrote it), only declared functions run.
    calls = SavedCalls(KEY)
    genuine = dump("t1", declared, 1)  # `signed` signs as the package does:
    assert signed("t1", genuine[len(MAGIC) :].partition(b":")[2]) == genuine
    body = b'{"func":"os:system","args":["touch ' + str(tmp_path / "ran").encode() + b'"]}'
    with pytest.raises(Untrusted, match="'os:system', which no module imported"):
        calls.load("t1", signed("t1", body))
    assert not (tmp_path / "ran").exists()


def test_without_a_key_nothing_is_saved_and_nothing_loads() -> None:
    with pytest.raises(ConfigError, match="set OFFLOAD_SECRET_KEY"):
        SavedCalls(None).dump("t1", declared, args=(), kwargs={}, **SETTINGS)
    with pytest.raises(Untrusted, match="no secret_key"):
        SavedCalls(None).load("t1", dump("t1", declared))


def test_requeue_per_call_needs_the_function_declared() -> None:
    with pytest.raises(ConfigError, match=r"undeclared is given requeue=True per call.*@task"):
        SavedCalls(KEY).dump("t1", undeclared, args=(), kwargs={}, **SETTINGS)


def test_arguments_that_cannot_pickle_or_are_too_large_are_refused_in_the_request() -> None:
    with pytest.raises(NotOffloadable, match="cannot be pickled"):
        dump("t1", declared, lambda: 1)
    with pytest.raises(NotOffloadable, match="pass a reference"):
        dump("t1", declared, "x" * (17 * 1024 * 1024))


def test_the_sqlite_key_file_is_private_and_shared(tmp_path: Path) -> None:
    database = str(tmp_path / "offload.db")
    old = os.umask(0o022)
    try:
        keys: list[bytes | None] = []
        threads = [
            threading.Thread(target=lambda: keys.append(load_key(None, database))) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        os.umask(old)
    assert len(set(keys)) == 1 and keys[0] is not None and len(keys[0]) == 64
    assert stat.S_IMODE(os.stat(database + ".key").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["offload.db.key"]  # no leftovers
    assert load_key("a configured key 123", database) == b"a configured key 123"
    assert load_key(None, None) is None  # Redis without a key
    (tmp_path / "offload.db.key").write_bytes(b"short")
    with pytest.raises(ConfigError, match="holds 5 bytes"):
        load_key(None, database)


def test_a_short_secret_key_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match="16 characters or more, got 6 characters") as caught:
        OffloadConfig.resolve({}, {"OFFLOAD_SECRET_KEY": "hunter"})
    assert "hunter" not in str(caught.value)
    config = OffloadConfig.resolve({"secret_key": "a long enough secret key"})
    assert "a long enough secret key" not in repr(config)  # nor in logs that show it


@pytest.mark.anyio
@pytest.mark.redis
async def test_redis_without_a_key_refuses_requeue_in_the_request(
    redis_base_url: str,
) -> None:
    async with Offload(store=f"{redis_base_url}/14") as offload:
        with pytest.raises(ConfigError, match="OFFLOAD_SECRET_KEY"):
            await offload.submit(jobs.sleep_then_append, 0, "/dev/null")
        await offload.submit(jobs.nap, 0)  # tasks that are not requeue=True still run
        await offload.join()


def plant(store_url: str, task_id: str, payload: bytes) -> None:
    """Write a live requeue row whose owner is gone, as anyone with access to the store can."""
    config = OffloadConfig.resolve({"store": store_url, "store_lease": 0.05})
    store = build_store(config)
    row = TaskRecord(task_id, "tests.apps.jobs.nap", "thread", None, (), {}, None, 0, 1.0)
    row.state, row.requeue, row.payload = TaskState.RUNNING, True, payload

    async def write() -> None:
        await store.open()
        try:
            store.put(row)
            await store.flush()
        finally:
            await store.close()

    anyio.run(write)


@pytest.mark.server
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_planted_row_runs_no_code_in_the_web_process(
    kind: str, start_server: StartServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Found by a security probe: every web process unpickled such a row about a second
    # after it was written (`__reduce__ -> os.system` ran as the server's user).
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'offload.db'}"
    else:
        url = f"{request.getfixturevalue('redis_base_url')}/14"
        redis.Redis.from_url(url).flushdb()
    marker = tmp_path / "ran"
    plant(url, "planted", pickle.dumps((Planted(marker), (), {})))
    env = {"OFFLOAD_STORE": url, "OFFLOAD_STORE_LEASE": "1"}
    server = start_server("tests.apps.durable_app:app", env=env)
    body = server.wait_for_state("planted", {"interrupted", "failed", "succeeded"})
    assert body["state"] == "interrupted", body
    assert "not in the signed format" in str(body["error"])
    assert not marker.exists()
    server.wait_for_log("(id 'planted') reclaimed from a process that stopped is interrupted")
    assert not marker.exists()


@pytest.mark.anyio
async def test_an_id_from_the_url_is_bounded_before_any_store_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi import FastAPI

    from fastapi_offload.stores.memory import MemoryStore

    from .helpers import serve

    asked: list[str] = []
    get = MemoryStore.get

    async def counting_get(self: MemoryStore, task_id: str) -> object:
        asked.append(task_id)
        return await get(self, task_id)

    monkeypatch.setattr(MemoryStore, "get", counting_get)
    offload = Offload()
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router(cancel=True, public=True))
    async with serve(app, offload) as client:
        for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/events")):
            response = await client.request(method, "/tasks/" + "x" * 201 + path)
            assert response.status_code == 404, response.text
            assert response.json()["state"] == "unknown"
        assert asked == []  # an id no lane or backend makes: nobody was asked
        assert (await client.get("/tasks/" + "x" * 200)).status_code == 404
        assert asked == ["x" * 200]
        assert (await offload.status("y" * 10_000)).state.value == "unknown"
