"""`status` with ids and records the backend did not make: unknown, never a 500 or an alias.

Task ids are 32 lowercase hex digits (the core's `IdSource`). Whatever else reaches
`GET /tasks/{id}` must come back as unknown: RQ refuses some ids with `ValueError`
and reads `<id>:<anything>` as `<id>`, and Celery refuses the empty id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
from fastapi import FastAPI
from rq.job import Job

import fastapi_offload.backends._client
from fastapi_offload import BackendUnavailable, Offload, OffloadTasks, TaskCall
from fastapi_offload.backends._ids import is_task_id
from fastapi_offload.backends.base import Backend
from fastapi_offload.backends.celery import CeleryBackend
from fastapi_offload.backends.rq import RQBackend
from fastapi_offload.testing import InlineBackend, RecordingBackend

from ..helpers import serve
from . import jobs
from ._support import call_of
from .conftest import backend_of

pytestmark = [
    pytest.mark.anyio,
    # Celery's Redis result backend (celery 5.7) stores states with `setex`, which
    # redis-py 8 deprecates; the warning comes from Celery's code, not ours.
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

# Each odd id, made from the id of a task that really exists (`real`).
ODD_IDS: dict[str, Callable[[str], str]] = {
    "empty": lambda real: "",
    "star": lambda real: "*",
    "percent": lambda real: "%",
    "dot": lambda real: "a.b",
    "unicode": lambda real: "ü",
    "long": lambda real: "x" * 1000,
    "slash": lambda real: "a/b",
    "space": lambda real: "a b",
    "dotdot-slash": lambda real: "../x",
    "real-colon-junk": lambda real: f"{real}:junk",
    "real-colon": lambda real: f"{real}:",
    "real-colon-dependents": lambda real: f"{real}:dependents",  # an RQ key exists
    "real-upper": lambda real: real.upper(),
    "real-newline": lambda real: f"{real}\n",
    "real-leading-space": lambda real: f" {real}",
    "real-unicode-digit": lambda real: real[:-1] + "\u0663",  # ARABIC-INDIC DIGIT THREE
    "real-one-more": lambda real: f"{real}0",
    "real-one-less": lambda real: real[:-1],
}
ODD = pytest.mark.parametrize("make_odd", ODD_IDS.values(), ids=ODD_IDS.keys())

# Ids the router never sees as `{task_id}`: the server decodes %2F into a path
# separator, and `/tasks/` has no id segment. Starlette answers those 404 itself.
NOT_ROUTED = {"empty", "slash", "dotdot-slash"}

REMOTE = ["rq", "celery"]


@pytest.fixture(
    params=[
        pytest.param("rq", marks=pytest.mark.redis),
        pytest.param("celery", marks=pytest.mark.redis),
        "inline",
        "recording",
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param in REMOTE:
        remote: Backend = request.getfixturevalue(f"{request.param}_backend")
        return remote
    if request.param == "inline":
        return InlineBackend(jobs)
    return RecordingBackend()


@pytest.fixture(params=[pytest.param(kind, marks=pytest.mark.redis) for kind in REMOTE])
def remote_backend(request: pytest.FixtureRequest) -> Backend:
    remote: Backend = request.getfixturevalue(f"{request.param}_backend")
    return remote


async def submit_real(backend: Backend, rq_url: str | None = None) -> TaskCall:
    """Submit a harmless task; for RQ, also give it the `:dependents` key RQ makes."""
    call = call_of(jobs.sleepy, 0)
    backend.prepare(call)
    await backend.submit(call)
    assert await backend.status(call.id) is not None
    if isinstance(backend, RQBackend):
        assert rq_url is not None
        connection = redis.Redis.from_url(rq_url)
        try:
            connection.sadd(Job.dependents_key_for(call.id), "another-job")
            connection.expire(Job.dependents_key_for(call.id), 600)
        finally:
            connection.close()
    return call


def _rq_url(request: pytest.FixtureRequest, backend: Backend) -> str | None:
    return request.getfixturevalue("rq_url") if isinstance(backend, RQBackend) else None


@ODD
async def test_an_odd_id_is_unknown(
    backend: Backend, make_odd: Callable[[str], str], request: pytest.FixtureRequest
) -> None:
    real = await submit_real(backend, _rq_url(request, backend))
    assert await backend.status(make_odd(real.id)) is None
    info = await backend.status(real.id)
    assert info is not None and info.id == real.id


@ODD
async def test_below_the_id_check_the_lookup_neither_raises_nor_aliases(
    remote_backend: Backend,
    make_odd: Callable[[str], str],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The broker lookup itself must be safe too, not only the shape check before it
    # (made for both backends by `backends._client.by_task_id`).
    real = await submit_real(remote_backend, _rq_url(request, remote_backend))
    monkeypatch.setattr(fastapi_offload.backends._client, "is_task_id", lambda value: True)
    assert await remote_backend.status(make_odd(real.id)) is None


# -- records under a well-formed id that RQ or Celery did not write -------------------


@pytest.fixture
def rq_redis(rq_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(rq_url)
    yield connection
    connection.close()


@pytest.fixture
def celery_redis(celery_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(celery_url)
    yield connection
    connection.close()


RQ_RECORDS: dict[str, Callable[[redis.Redis, str], Any]] = {
    "not-a-hash": lambda r, key: r.set(key, "x"),
    "unknown-status": lambda r, key: r.hset(key, mapping={"data": "x", "status": "weird"}),
    "bad-date": lambda r, key: r.hset(key, mapping={"data": "x", "created_at": "garbage"}),
    "bad-number": lambda r, key: r.hset(key, mapping={"data": "x", "retries_left": "z"}),
    "bad-json": lambda r, key: r.hset(key, mapping={"data": "x", "dependency_ids": "{"}),
}


@pytest.mark.redis
@pytest.mark.parametrize("write", RQ_RECORDS.values(), ids=RQ_RECORDS.keys())
async def test_an_rq_record_rq_cannot_read_is_unknown(
    rq_backend: RQBackend,
    rq_redis: redis.Redis,
    write: Callable[[redis.Redis, str], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    task_id = call_of(jobs.sleepy, 0).id
    key = Job.key_for(task_id)
    write(rq_redis, key)
    try:
        assert await rq_backend.status(task_id) is None
    finally:
        rq_redis.delete(key)
    assert "answered as unknown" in caplog.text


CELERY_RECORDS: dict[str, Callable[[redis.Redis, str], Any]] = {
    "not-json": lambda r, key: r.set(key, "not json"),
    "pickled": lambda r, key: r.set(key, b"\x80\x04K\x01."),
    "json-list": lambda r, key: r.set(key, "[1, 2]"),
    "json-null": lambda r, key: r.set(key, "null"),
    "no-status": lambda r, key: r.set(key, '{"result": "x"}'),  # was a 503
    "failure-not-an-exception": lambda r, key: r.set(key, '{"status": "FAILURE", "result": 1}'),
    "not-a-string": lambda r, key: r.sadd(key, "x"),
}


@pytest.mark.redis
@pytest.mark.parametrize("write", CELERY_RECORDS.values(), ids=CELERY_RECORDS.keys())
async def test_a_celery_record_this_process_cannot_read_is_unknown(
    celery_backend: CeleryBackend,
    celery_redis: redis.Redis,
    write: Callable[[redis.Redis, str], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    task_id = call_of(jobs.sleepy, 0).id
    key = f"celery-task-meta-{task_id}"
    write(celery_redis, key)
    try:
        info = await celery_backend.status(task_id)
    except BackendUnavailable as exc:  # the broker is up: a 503 would be a lie
        pytest.fail(f"a bad record was reported as an unreachable store: {exc}")
    finally:
        celery_redis.delete(key)
    assert info is None
    assert "answered as unknown" in caplog.text


# -- through HTTP -------------------------------------------------------------------


def make_app(offload: Offload) -> FastAPI:
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router())

    @app.post("/sleepy", status_code=202)
    async def sleepy(tasks: OffloadTasks) -> dict[str, Any]:
        return {"id": tasks.add_task(jobs.sleepy, 0).id}

    return app


@pytest.mark.redis
@pytest.mark.parametrize("kind", REMOTE)
async def test_get_tasks_with_an_odd_id_answers_404_unknown(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{kind}_url")
    backend = backend_of(kind, url)
    offload = Offload(backend=backend)
    async with serve(make_app(offload), offload) as client:
        posted = await client.post("/sleepy")
        assert posted.status_code == 202, posted.text
        real = posted.json()["id"]
        assert re.fullmatch("[0-9a-f]{32}", real) and is_task_id(real)
        assert (await client.get(f"/tasks/{real}")).status_code == 200
        for label, make_odd in ODD_IDS.items():
            odd = make_odd(real)
            response = await client.get("/tasks/" + quote(odd, safe=""))
            assert response.status_code == 404, (label, response.text)
            body = response.json()
            if label in NOT_ROUTED:
                assert "state" not in body, (label, body)
            else:
                assert body["state"] == "unknown" and body["id"] == odd, (label, body)
