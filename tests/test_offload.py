"""OffloadTasks inside requests: handles, status, failures, options, bad input, backpressure."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Annotated, Any

import anyio
import pytest
from fastapi import Depends, FastAPI, HTTPException, Response, WebSocket

from fastapi_offload import (
    ConfigError,
    NotOffloadable,
    Offload,
    OffloadClosed,
    OffloadTasks,
    TaskState,
)

from .apps import jobs
from .helpers import lines, serve

pytestmark = pytest.mark.anyio


def make_app(offload: Offload) -> FastAPI:
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router())
    return app


async def test_add_task_returns_a_handle_and_the_task_runs_after_the_response(
    tmp_path: Path,
) -> None:
    offload = Offload()
    app = make_app(offload)
    out = tmp_path / "out.txt"

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> dict[str, Any]:
        handle = tasks.add_task(jobs.write, str(out), "hello", suffix="!")
        await anyio.sleep(0.05)
        # Nothing has started while the endpoint runs: tasks start after the response.
        return {"id": handle.id, "lane": handle.lane, "ran_early": out.exists()}

    async with serve(app, offload) as client:
        body = (await client.post("/")).json()
        await offload.join()
        assert body["lane"] == "thread" and body["ran_early"] is False
        assert len(body["id"]) == 32
        assert lines(out)[0].startswith("hello! ")
        status = (await client.get(f"/tasks/{body['id']}")).json()
    assert status["state"] == "succeeded"
    assert status["name"] == "tests.apps.jobs.write"
    assert status["attempts"] == 1


async def test_a_failing_task_is_logged_and_does_not_stop_its_siblings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    offload = Offload()
    app = make_app(offload)
    out = tmp_path / "out.txt"

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> list[str]:
        failing = tasks.add_task(jobs.fail, "first one breaks")
        tasks.add_task(jobs.write, str(out), "second")
        tasks.add_task(jobs.async_write, str(out), "third")
        return [failing.id]

    async with serve(app, offload) as client:
        [failed_id] = (await client.post("/")).json()
        await offload.join()
        info = await offload.status(failed_id)
    assert info.state is TaskState.FAILED
    assert info.error == "ValueError('first one breaks')"
    assert sorted(line.split()[0] for line in lines(out)) == ["second", "third"]
    assert f"task tests.apps.jobs.fail (id {failed_id}, thread lane) failed" in caplog.text


async def test_a_custom_response_still_runs_the_tasks(tmp_path: Path) -> None:
    # FastAPI drops injected BackgroundTasks when the endpoint returns its own Response
    # with background=...; OffloadTasks must not.
    from starlette.background import BackgroundTask

    offload = Offload()
    app = make_app(offload)
    out = tmp_path / "out.txt"

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> Response:
        tasks.add_task(jobs.write, str(out), "offloaded")
        return Response("ok", background=BackgroundTask(jobs.write, str(out), "own"))

    async with serve(app, offload) as client:
        assert (await client.post("/")).text == "ok"
        await offload.join()
    assert sorted(line.split()[0] for line in lines(out)) == ["offloaded", "own"]


async def test_an_endpoint_that_raises_runs_none_of_its_tasks(tmp_path: Path) -> None:
    offload = Offload()
    app = make_app(offload)
    out = tmp_path / "out.txt"
    ids: list[str] = []

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        ids.append(tasks.add_task(jobs.write, str(out), "never").id)
        raise HTTPException(400, "bad request")

    async with serve(app, offload) as client:
        assert (await client.post("/")).status_code == 400
        await offload.join()
        assert (await offload.status(ids[0])).state is TaskState.UNKNOWN
        assert offload.stats().lanes["thread"].waiting == 0
    assert not out.exists()


async def test_options_never_mix_with_the_tasks_own_keyword_arguments() -> None:
    offload = Offload()
    app = make_app(offload)
    seen: list[dict[str, Any]] = []

    def job(*, lane: str, timeout: int, retries: str) -> None:
        seen.append({"lane": lane, "timeout": timeout, "retries": retries})

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> str:
        tasks.add_task(job, lane="kwarg", timeout=5, retries="x")
        return (
            tasks.options(lane="thread", timeout=10)
            .add_task(job, lane="b", timeout=6, retries="y")
            .lane
        )

    async with serve(app, offload) as client:
        assert (await client.post("/")).json() == "thread"
        await offload.join()
    assert sorted(seen, key=lambda d: d["timeout"]) == [
        {"lane": "kwarg", "timeout": 5, "retries": "x"},
        {"lane": "b", "timeout": 6, "retries": "y"},
    ]


async def test_bad_input_fails_in_the_request_with_a_clear_error() -> None:
    offload = Offload()
    app = make_app(offload)
    lock = threading.Lock()
    errors: list[Exception] = []

    def closure_maker() -> Any:
        def inner() -> None:
            return None

        return inner

    attempts: list[Any] = [
        lambda tasks: tasks.add_task(42),
        lambda tasks: tasks.options(lane="process").add_task(lambda: None),
        lambda tasks: tasks.options(lane="process").add_task(closure_maker()),
        lambda tasks: tasks.add_task(jobs.write_in_process, "p", "t", suffix=lock),
        lambda tasks: tasks.options(lane="loop").add_task(jobs.write, "p", "t"),
        lambda tasks: tasks.options(lane="thread").add_task(jobs.async_sleep, 1),
        lambda tasks: tasks.options(lane="gpu"),
        lambda tasks: tasks.options(lane="remote").add_task(jobs.write, "p", "t"),
    ]

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        for attempt in attempts:
            try:
                attempt(tasks)
            except Exception as exc:  # noqa: PERF203 - collected to check each message
                errors.append(exc)

    async with serve(app, offload) as client:
        assert (await client.post("/")).status_code == 200
        await offload.join()
    messages = [str(e) for e in errors]
    assert len(errors) == len(attempts)
    assert isinstance(errors[0], NotOffloadable) and "takes a callable first; got 42" in messages[0]
    assert "is a lambda or a function defined inside another function" in messages[1]
    assert "<lambda>" in messages[1] and "define it at module level" in messages[1]
    assert "closure_maker.<locals>.inner" in messages[2]
    assert "argument 'suffix' (lock) cannot be pickled" in messages[3]
    assert "tests.apps.jobs.write is a sync function" in messages[4]
    assert "async_sleep is an `async def` callable" in messages[5]
    assert isinstance(errors[6], ConfigError) and "lane='gpu'" in messages[6]
    assert "no backend is configured" in messages[7]
    assert offload.stats().lanes["process"].waiting == 0


async def test_a_full_lane_answers_503_with_retry_after_and_accepts_nothing() -> None:
    offload = Offload(max_pending=2)
    app = make_app(offload)

    @app.post("/")
    async def endpoint(tasks: OffloadTasks, count: int) -> int:
        for _ in range(count):
            tasks.add_task(jobs.nap, 0.01)
        return count

    async with serve(app, offload) as client:
        response = await client.post("/", params={"count": 3})
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert (
            "the thread lane is full (2 tasks waiting, max_pending=2)" in response.json()["detail"]
        )
        assert "tests.apps.jobs.nap was not accepted" in response.json()["detail"]
        # The two tasks admitted before the third was refused were withdrawn too.
        assert offload.stats().lanes["thread"].waiting == 0
        assert (await client.post("/", params={"count": 2})).status_code == 200
        await offload.join()
        assert offload.stats().lanes["thread"].succeeded == 2


async def test_a_stopped_runtime_refuses_new_work() -> None:
    offload = Offload()
    async with offload:
        pass
    with pytest.raises(OffloadClosed, match="not running"):
        await offload.submit(jobs.nap, 0)


async def test_status_of_an_unknown_id() -> None:
    offload = Offload()
    app = make_app(offload)
    async with serve(app, offload) as client:
        response = await client.get("/tasks/does-not-exist")
    assert response.status_code == 404
    assert response.json()["state"] == "unknown"


async def test_retries_then_success(tmp_path: Path) -> None:
    offload = Offload()
    flaky = jobs.Flaky(str(tmp_path / "calls"), failures=2)
    async with offload:
        handle = await offload.submit(flaky)
        await offload.join()
    assert (await offload.status(handle.id)).state is TaskState.FAILED  # no retries by default

    offload = Offload()
    app = make_app(offload)
    (tmp_path / "calls").unlink()

    @app.post("/")
    async def endpoint(tasks: OffloadTasks, retries: int) -> str:
        return tasks.options(retries=retries, retry_delay=0).add_task(flaky).id

    async with serve(app, offload) as client:
        task_id = (await client.post("/", params={"retries": 2})).json()
        await offload.join()
        info = await offload.status(task_id)
    assert info.state is TaskState.SUCCEEDED and info.attempts == 3
    assert offload.stats().lanes["thread"].retried == 2


@pytest.mark.parametrize(("func", "lane"), [(jobs.async_sleep, "loop"), (jobs.nap, "thread")])
async def test_timeouts_fail_the_task(func: Any, lane: str) -> None:
    offload = Offload(timeout=0.2)
    async with offload:
        handle = await offload.submit(func, 30)
        with anyio.fail_after(10):
            await offload.join()
        info = await offload.status(handle.id)
    assert handle.lane == lane
    assert info.state is TaskState.FAILED
    assert (
        info.error is not None and "TaskTimeout" in info.error and "timeout of 0.2 s" in info.error
    )


async def test_cpu_bound_work_on_threads_is_named_once(caplog: pytest.LogCaptureFixture) -> None:
    offload = Offload()
    async with offload:
        for _ in range(2):
            await offload.submit(jobs.crunch, 160_000)
            await offload.join()
        await offload.submit(jobs.nap, 0.2)  # waits, uses no CPU: no advice
        await offload.join()
    advice = [r for r in caplog.records if "on the CPU in the thread lane" in r.getMessage()]
    assert len(advice) == 1
    assert advice[0].getMessage().startswith("tests.apps.jobs.crunch spent")
    assert "@cpu_bound" in advice[0].getMessage()
    assert offload.stats().cpu_bound_callables == ("tests.apps.jobs.crunch",)


async def test_auto_promote_moves_cpu_bound_callables_to_processes() -> None:
    offload = Offload(auto_promote=True)
    async with offload:
        first = await offload.submit(jobs.crunch, 160_000)
        await offload.join()
        second = await offload.submit(jobs.crunch, 10)
        await offload.join()
        info = await offload.status(second.id)
    assert (first.lane, second.lane) == ("thread", "process")
    assert info.state is TaskState.SUCCEEDED


async def test_routing_rules_and_precedence() -> None:
    offload = Offload(routes={"tests.apps.jobs.w*": "process"})
    app = make_app(offload)

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> str:
        return tasks.options(lane="thread").add_task(jobs.write, "/dev/null", "x").lane

    async with serve(app, offload) as client:
        by_rule = await offload.submit(jobs.write, "/dev/null", "x")
        by_default = await offload.submit(jobs.nap, 0)
        by_option = (await client.post("/")).json()
        await offload.join()
    assert (by_rule.lane, by_default.lane, by_option) == ("process", "thread", "thread")


async def audit(tasks: OffloadTasks, path: str) -> AsyncIterator[None]:
    tasks.add_task(jobs.write, path, "audit")
    yield


async def test_a_users_yield_dependency_can_take_offload_tasks(tmp_path: Path) -> None:
    # BackgroundTasks works inside a user's `yield` dependency; OffloadTasks must too.
    offload = Offload()
    app = make_app(offload)
    out = tmp_path / "out.txt"

    @app.post("/")
    async def endpoint(_: Annotated[None, Depends(audit)], tasks: OffloadTasks) -> None:
        tasks.add_task(jobs.write, str(out), "endpoint")

    async with serve(app, offload) as client:
        assert (await client.post("/", params={"path": str(out)})).status_code == 200
        await offload.join()
    assert sorted(line.split()[0] for line in lines(out)) == ["audit", "endpoint"]


async def test_no_lifespan_runs_the_tasks_inside_the_request(tmp_path: Path) -> None:
    app = FastAPI()
    out = tmp_path / "out.txt"

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> str:
        tasks.add_task(jobs.nap, 0.2)
        tasks.add_task(jobs.async_sleep, 0.2)
        return tasks.add_task(jobs.write, str(out), "zero-setup").id

    app.include_router(Offload().status_router())  # a router of an Offload never started

    async with serve(app) as client:
        task_id = (await client.post("/")).json()
        # The ASGI call returned once all three had run (the write is in the file).
        assert lines(out)[0].startswith("zero-setup")
        # The tasks belong to the app's default runtime: a later request (here the status
        # router of an Offload that was never started) finds them there.
        status = await client.get(f"/tasks/{task_id}")
        assert status.json()["state"] == "succeeded"


async def get_db(path: str) -> AsyncIterator[str]:
    """A session-like `yield` dependency that logs its opening and closing."""
    jobs.write(path, "open")
    yield "session"
    jobs.write(path, "close")


@pytest.mark.parametrize("tasks_first", [True, False], ids=["tasks-first", "db-first"])
@pytest.mark.parametrize("job", [jobs.write, jobs.async_write], ids=["def", "async-def"])
async def test_no_lifespan_runs_the_tasks_before_yield_dependencies_exit(
    tmp_path: Path, tasks_first: bool, job: Any
) -> None:
    # FastAPI's own test_dependency_contextmanager.py with OffloadTasks: the task must see
    # the session open, as with BackgroundTasks (was: open, close, task when `tasks`
    # came first in the signature).
    out = tmp_path / "out.txt"
    app = FastAPI()
    if tasks_first:

        @app.post("/")
        async def endpoint(tasks: OffloadTasks, db: Annotated[str, Depends(get_db)]) -> None:
            tasks.add_task(job, str(out), f"task-with-{db}")

    else:

        @app.post("/")
        async def endpoint(db: Annotated[str, Depends(get_db)], tasks: OffloadTasks) -> None:  # type: ignore[misc]
            tasks.add_task(job, str(out), f"task-with-{db}")

    async with serve(app) as client:
        assert (await client.post("/", params={"path": str(out)})).status_code == 200
    assert [line.split()[0] for line in lines(out)] == ["open", "task-with-session", "close"]


def test_testclient_without_with_block_sees_finished_tasks(tmp_path: Path) -> None:
    # FastAPI's documented testing pattern: a TestClient without `with`, which gives each
    # request an event loop of its own. Tasks must be done when the call returns, as
    # with BackgroundTasks.
    from fastapi.testclient import TestClient

    app = FastAPI()
    out = tmp_path / "out.txt"

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        tasks.add_task(jobs.write, str(out), "sync")
        tasks.add_task(jobs.async_write, str(out), "async")
        tasks.add_task(jobs.write_in_process, str(out), "process")

    client = TestClient(app)
    for _ in range(2):
        assert client.post("/").status_code == 200
    assert (
        sorted(line.split()[0] for line in lines(out))
        == ["async"] * 2 + ["process"] * 2 + ["sync"] * 2
    )


def test_testclient_with_lifespan(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    offload = Offload()
    app = make_app(offload)
    out = tmp_path / "out.txt"

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> str:
        return tasks.add_task(jobs.write_in_process, str(out), "process").id

    for _ in range(2):  # the same Offload, started and stopped twice
        with TestClient(app) as client:
            task_id = client.post("/").json()
            client.portal.call(offload.join)  # type: ignore[union-attr]  # set inside `with`
            assert client.get(f"/tasks/{task_id}").json()["state"] == "succeeded"
    assert len(lines(out)) == 2


@pytest.mark.parametrize("wait_for_tasks", [True, False])
def test_wait_for_tasks_lets_existing_testclient_tests_pass_with_the_lifespan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wait_for_tasks: bool
) -> None:
    # What FastAPI users' tests do: assert a task's effect right after `client.post`.
    from fastapi.testclient import TestClient

    if wait_for_tasks:
        monkeypatch.setenv("OFFLOAD_WAIT_FOR_TASKS", "1")  # e.g. in the suite's conftest.py
    offload = Offload()
    app = make_app(offload)
    out = tmp_path / "out.txt"

    @app.post("/")
    async def endpoint(tasks: OffloadTasks, _: Annotated[str, Depends(get_db)]) -> None:
        tasks.add_task(jobs.sleep_then_write, 0.3, str(out))
        tasks.add_task(jobs.write_in_process, str(out), "process")

    with TestClient(app) as client:
        assert client.post("/", params={"path": str(out)}).status_code == 200
        written = sorted(line.split()[0] for line in lines(out))
        if wait_for_tasks:  # the request waited for its tasks, its dependency after them
            assert written == ["close", "finished", "open", "process"]
            assert lines(out)[-1].startswith("close")
        else:  # detached: the response came back before the slower task wrote
            assert "finished" not in written
        client.portal.call(offload.join)  # type: ignore[union-attr]  # set inside `with`


async def test_stats_count_per_lane() -> None:
    offload = Offload()
    async with offload:
        await offload.submit(jobs.nap, 0)
        await offload.submit(jobs.async_sleep, 0)
        await offload.submit(jobs.fail, "x")
        await offload.join()
    stats = offload.stats()
    assert stats.lanes["thread"].succeeded == 1 and stats.lanes["thread"].failed == 1
    assert stats.lanes["loop"].succeeded == 1
    assert stats.to_dict()["lanes"]["thread"]["capacity"] == 16
    logging.getLogger(__name__).debug("stats: %s", stats)


async def test_auto_promote_keeps_a_call_that_cannot_travel_on_threads() -> None:
    offload = Offload(auto_promote=True, routes={"tests.apps.jobs.write": "process"})
    async with offload:
        await offload.submit(jobs.crunch, 160_000)
        await offload.join()
        # Promotion is ours, so an unpicklable argument quietly keeps it on a thread...
        kept = await offload.submit(jobs.crunch, threading.Lock())  # type: ignore[arg-type]
        # ...but a lane the user chose (here by a routing rule) fails loudly.
        with pytest.raises(NotOffloadable, match="argument 'suffix'"):
            await offload.submit(jobs.write, "/dev/null", "x", suffix=threading.Lock())  # type: ignore[arg-type]
        await offload.join()
    assert kept.lane == "thread"


async def test_a_task_calling_sys_exit_fails_alone(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    async with Offload() as offload:
        exited = await offload.submit(jobs.exit_interpreter)
        await offload.submit(jobs.write, str(out), "still here")
        await offload.join()
        info = await offload.status(exited.id)
    assert info.state is TaskState.FAILED and info.error == "SystemExit(3)"
    assert lines(out)[0].startswith("still here")


def test_websocket_endpoints_can_offload(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    offload = Offload()
    app = make_app(offload)
    out = tmp_path / "out.txt"

    @app.websocket("/ws")
    async def websocket(socket: WebSocket, tasks: OffloadTasks) -> None:
        await socket.accept()
        handle = tasks.add_task(jobs.write, str(out), await socket.receive_text())
        await socket.send_text(handle.id)
        await socket.close()

    with TestClient(app) as client, client.websocket_connect("/ws") as socket:
        socket.send_text("over-websocket")
        task_id = socket.receive_text()
    assert lines(out)[0].startswith("over-websocket")
    assert len(task_id) == 32


async def fetch_and_log(url: str, *, retries: int = 1) -> None:
    """Never runs: the tests below pass its coroutine object where it belongs."""


async def test_a_coroutine_object_is_refused_naming_the_call_to_write() -> None:
    offload = Offload()
    app = make_app(offload)
    made: list[Coroutine[Any, Any, None]] = []
    errors: list[Exception] = []

    @app.post("/")
    async def endpoint(tasks: OffloadTasks) -> None:
        made.append(fetch_and_log("https://example.com", retries=2))
        made.append(jobs.async_write("p", "t"))
        for coroutine in made:
            try:
                tasks.add_task(coroutine)  # type: ignore[arg-type]  # the mistake under test
            except Exception as exc:  # noqa: PERF203 - collected to check each message
                errors.append(exc)

    async with serve(app, offload) as client:
        assert (await client.post("/")).status_code == 200
    assert all(isinstance(e, NotOffloadable) and isinstance(e, TypeError) for e in errors)
    assert len(errors) == 2
    assert (
        "pass the function and its arguments: add_task(fetch_and_log, url, retries=retries), "
        "not add_task(fetch_and_log(url, retries=retries))"
    ) in str(errors[0])
    assert "add_task(async_write, path, text)" in str(errors[1])
    # Closed, so Python does not warn later that it was never awaited.
    assert [inspect.getcoroutinestate(c) for c in made] == ["CORO_CLOSED"] * 2


async def test_submit_refuses_a_coroutine_object_too() -> None:
    coroutine = fetch_and_log("https://example.com")
    async with Offload() as offload:
        with pytest.raises(NotOffloadable, match=r"submit\(fetch_and_log, url, retries=retries\)"):
            await offload.submit(coroutine)  # type: ignore[arg-type]  # the mistake under test
    assert inspect.getcoroutinestate(coroutine) == "CORO_CLOSED"
