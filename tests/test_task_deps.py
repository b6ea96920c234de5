"""Tasks declare their own dependencies (`Depends(...)`), resolved per attempt."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import pytest
from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import SecurityScopes

from fastapi_offload import NotOffloadable, Offload, OffloadTasks, TaskState, cpu_bound
from fastapi_offload.testing import RecordingBackend

from .conftest import StartServer
from .helpers import serve

pytestmark = pytest.mark.anyio

LOG: list[str] = []
LOCK = threading.Lock()


def log(line: str) -> None:
    with LOCK:
        LOG.append(line)


@pytest.fixture(autouse=True)
def clear_log() -> None:
    LOG.clear()


class Session:
    opened = 0

    def __init__(self, settings: dict[str, str]) -> None:
        Session.opened += 1
        self.number = Session.opened
        self.settings = settings
        self.closed = False


def get_settings() -> dict[str, str]:
    return {"dsn": "sqlite://"}  # a fresh dict each time it is resolved


Settings = Annotated[dict[str, str], Depends(get_settings)]


async def get_db(settings: Settings) -> AsyncIterator[Session]:
    session = Session(settings)
    log(f"open {session.number}")
    try:
        yield session
    except Exception as exc:
        log(f"rollback {session.number} {type(exc).__name__}")
        raise
    finally:
        session.closed = True
        log(f"close {session.number}")


def get_sync_db() -> Iterator[Session]:
    session = Session({})
    log(f"open {session.number}")
    yield session
    session.closed = True
    log(f"close {session.number}")


async def save_order(
    order_id: int,
    db: Session = Depends(get_db),
    settings: dict[str, str] = Depends(get_settings),
) -> None:
    assert not db.closed
    assert db.settings is settings  # cached within the attempt, as in a request
    log(f"task {order_id} on {db.number}")


def save_order_in_thread(order_id: int, db: Session = Depends(get_sync_db)) -> None:
    assert not db.closed
    log(f"task {order_id} on {db.number} in {threading.current_thread().name}")


attempts = 0


async def flaky(db: Session = Depends(get_db)) -> None:
    global attempts
    attempts += 1
    log(f"attempt {attempts} on {db.number}")
    if attempts < 3:
        raise ConnectionError("try again")


def slow_thread(seconds: float, db: Session = Depends(get_sync_db)) -> None:
    time.sleep(seconds)
    log(f"thread done, db closed: {db.closed}")


async def endless(db: Session = Depends(get_db)) -> None:
    await asyncio.sleep(60)


def scoped(scopes: SecurityScopes) -> list[str]:
    return scopes.scopes


async def with_scopes(granted: list[str] = Security(scoped, scopes=["orders:write"])) -> None:
    log(f"scopes {granted}")


def needs_request(request: Request) -> str:
    return request.url.path


async def wants_request(path: str = Depends(needs_request)) -> None: ...


def header_user(x_user: str) -> str:  # a query parameter for FastAPI
    return x_user


async def wants_query(user: str = Depends(header_user)) -> None: ...


@cpu_bound
def in_process(db: Session = Depends(get_sync_db)) -> None: ...


def app_with(offload: Offload) -> FastAPI:
    return FastAPI(lifespan=offload.lifespan)


async def test_a_task_gets_its_own_dependencies_when_it_runs() -> None:
    offload = Offload()
    app = app_with(offload)

    @app.post("/orders/{order_id}")
    async def create(order_id: int, tasks: OffloadTasks) -> None:
        tasks.add_task(save_order, order_id)  # the dependencies are optional for mypy
        tasks.add_task(save_order_in_thread, order_id)

    async with serve(app, offload) as client:
        assert (await client.post("/orders/7")).status_code == 200
        with anyio.fail_after(5):
            await offload.join()
    assert len(LOG) == 6
    opened = {line.split()[1] for line in LOG if line.startswith("open")}
    closed = {line.split()[1] for line in LOG if line.startswith("close")}
    assert opened == closed and len(opened) == 2  # one session per task, each closed
    [on_loop] = [line for line in LOG if line.startswith("task") and " in " not in line]
    [in_thread] = [line for line in LOG if line.startswith("task") and " in " in line]
    assert "MainThread" not in in_thread
    tasks = [on_loop, in_thread]
    for task in tasks:  # each ran between its session's open and close
        number = task.split()[3]
        assert LOG.index(f"open {number}") < LOG.index(task) < LOG.index(f"close {number}")


async def test_each_attempt_has_its_own_dependencies_and_sees_the_failure() -> None:
    global attempts
    attempts = 0
    async with Offload() as offload:
        await offload.options(retries=2, retry_delay=0).submit(flaky)
        with anyio.fail_after(5):
            await offload.join()
    # Session numbers grow across tests: compare the lines without them.
    shapes = [" ".join(w for w in line.split() if not w.isdigit()) for line in LOG]
    assert shapes == [
        "open", "attempt on", "rollback ConnectionError", "close",
        "open", "attempt on", "rollback ConnectionError", "close",
        "open", "attempt on", "close",
    ]  # fmt: skip
    numbers = [line.split()[-1] for line in LOG if line.startswith("open")]
    assert len(set(numbers)) == 3


async def test_dependency_overrides_of_the_app_apply() -> None:
    offload = Offload()
    app = app_with(offload)
    fake = Session({"dsn": "fake"})

    async def fake_db(settings: Settings) -> AsyncIterator[Session]:
        fake.settings = settings
        log("fake open")
        yield fake
        log("fake close")

    app.dependency_overrides[get_db] = fake_db

    @app.post("/")
    async def create(tasks: OffloadTasks) -> None:
        tasks.add_task(save_order, 1)

    async with serve(app, offload) as client:
        await client.post("/")
        with anyio.fail_after(5):
            await offload.join()
    assert LOG == ["fake open", f"task 1 on {fake.number}", "fake close"]


async def test_security_scopes_reach_the_dependency() -> None:
    async with Offload() as offload:
        await offload.submit(with_scopes)
        await offload.join()
    assert LOG == ["scopes ['orders:write']"]


async def test_a_timed_out_thread_task_keeps_its_dependencies_until_it_returns() -> None:
    # Closing a session under a thread that still uses it would be worse than waiting.
    async with Offload() as offload:
        handle = await offload.options(timeout=0.1).submit(slow_thread, 0.5)
        with anyio.fail_after(5):
            await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.FAILED and "timeout" in (info.error or "")
    assert [line.split()[0] for line in LOG] == ["open", "thread", "close"]
    assert "db closed: False" in LOG[1]


async def test_a_cancelled_task_exits_its_dependencies() -> None:
    async with Offload() as offload:
        handle = await offload.submit(endless)
        with anyio.fail_after(5):
            while not LOG:  # noqa: ASYNC110 - the task's dependency logs from its own task
                await anyio.sleep(0.01)
        assert await offload.cancel(handle.id)
        with anyio.fail_after(5):
            await offload.join()
        assert (await offload.status(handle.id)).state is TaskState.CANCELLED
    assert [line.split()[0] for line in LOG] == ["open", "close"]


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (wants_request, r"'path' \(needs_request\) needs the Request \(parameter 'request'\)"),
        (wants_query, r"'user' \(header_user\) needs a query parameter \(parameter 'x_user'\)"),
    ],
)
async def test_a_dependency_that_needs_the_request_is_refused_in_add_task(
    func: Any, message: str
) -> None:
    async with Offload() as offload:
        with pytest.raises(NotOffloadable, match=message):
            await offload.submit(func)


async def test_dependencies_are_refused_where_they_cannot_be_resolved() -> None:
    async with Offload() as offload:
        with pytest.raises(NotOffloadable, match=r"declares dependencies \(db\).*process lane"):
            await offload.submit(in_process)
        with pytest.raises(NotOffloadable, match="db is a dependency"):
            await offload.submit(save_order, 1, db=Session({}))
        with pytest.raises(NotOffloadable, match="positional argument 2 is a dependency"):
            await offload.submit(save_order_in_thread, 1, Session({}))
    async with Offload(backend=RecordingBackend()) as remote:
        with pytest.raises(NotOffloadable, match="the remote lane"):
            await remote.submit(save_order, 1)


async def test_a_detached_task_given_a_yield_dependencys_object_is_refused() -> None:
    offload = Offload()
    app = app_with(offload)

    @app.post("/detached")
    async def detached(tasks: OffloadTasks, db: Annotated[Session, Depends(get_db)]) -> None:
        tasks.add_task(save_order_in_thread, 1, db)

    @app.post("/declared")
    async def declared(tasks: OffloadTasks, db: Annotated[Session, Depends(get_db)]) -> None:
        tasks.add_task(save_order_in_thread, db.number)  # a value taken from it: fine

    async with serve(app, offload) as client:
        with pytest.raises(NotOffloadable, match=r"given 'db', the value of the endpoint's yield"):
            await client.post("/detached")
        assert (await client.post("/declared")).status_code == 200
        await offload.join()


async def test_without_a_lifespan_the_requests_own_session_may_be_passed() -> None:
    # The task runs before the dependency exits, as with BackgroundTasks.
    app = FastAPI()

    @app.post("/")
    async def endpoint(tasks: OffloadTasks, db: Annotated[Session, Depends(get_db)]) -> None:
        tasks.add_task(use_session, db)

    async with serve(app) as client:
        assert (await client.post("/")).status_code == 200
    assert [line.split()[0] for line in LOG] == ["open", "used", "close"]


def use_session(db: Session) -> None:
    assert not db.closed
    log(f"used {db.number}")


@pytest.mark.server
def test_shutdown_exits_a_running_tasks_dependencies(
    start_server: StartServer, tmp_path: Path
) -> None:
    out = tmp_path / "deps.log"
    server = start_server("tests.apps.deps_app:app", env={"DEPS_LOG": str(out)})
    with server.client() as client:
        assert client.post("/hold", params={"seconds": 60}).status_code == 202
    deadline = time.monotonic() + 10
    while "running with connection" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.05)
    assert server.stop() in (0, -15)  # SIGTERM: the drain cancels it after shutdown_timeout
    assert out.read_text().splitlines() == [
        "open",
        "running with connection",
        "rollback CancelledError",
        "close",
    ]


def test_the_yield_parameters_of_a_route_are_found_once() -> None:
    # On every `add_task` of a detached runtime: FastAPI's routes are unhashable, so the
    # answer is kept on the route itself (a WeakKeyDictionary missed on every call).
    from fastapi.routing import APIRoute

    from fastapi_offload import _task_deps

    def session() -> Iterator[str]:
        yield "db"

    async def endpoint(db: str = Depends(session)) -> None:
        return None

    route = APIRoute("/x", endpoint)
    first = _task_deps._yielded_params(route)
    assert first[1] == (("db", session.__qualname__),)
    assert _task_deps._yielded_params(route) is first  # not computed again
