"""Periodic tasks in-process: their declaration and its refusals, the tick times, and
the scheduler on the memory store and on each durable store (several runtimes sharing a
SQLite file or a Redis take each tick once), catch-up, overlap, a full lane, a failing
store and a remote backend. Under real uvicorn servers: `test_periodic_servers.py`."""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from fastapi_offload import (
    ConfigError,
    NotOffloadable,
    Offload,
    ScheduleInfo,
    StoreUnavailable,
    TaskState,
)
from fastapi_offload._extras import install_hint
from fastapi_offload.core.periodic import server_workers
from fastapi_offload.core.timetable import Cron, Every
from fastapi_offload.testing import RecordingBackend
from tests.backends.conftest import redis_base_url as redis_base_url  # the fixture

pytestmark = pytest.mark.anyio

NAME = f"{__name__}.tick"
RUNS: list[tuple[float, str]] = []  # (when, which thread or task) of every run of `tick`
LOCK = threading.Lock()
RUNNING = 0
MOST_AT_ONCE = 0


def tick() -> None:
    with LOCK:
        RUNS.append((time.time(), threading.current_thread().name))


async def slow_tick() -> None:
    global RUNNING, MOST_AT_ONCE
    RUNNING += 1
    MOST_AT_ONCE = max(MOST_AT_ONCE, RUNNING)
    try:
        await anyio.sleep(0.5)
    finally:
        RUNNING -= 1


def blocking_tick() -> None:
    time.sleep(1.0)


def needs_an_argument(path: str) -> None:
    raise AssertionError("never called")


class Jobs:
    def method(self) -> None:
        raise AssertionError("never called")


@pytest.fixture(autouse=True)
def _fresh_runs() -> Iterator[None]:
    global RUNNING, MOST_AT_ONCE
    RUNS.clear()
    RUNNING = MOST_AT_ONCE = 0
    yield
    RUNS.clear()


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store URL of each kind: memory (each runtime its own), a SQLite file, a Redis."""
    if request.param == "memory":
        yield "memory"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'offload.db'}"
    else:
        url = f"{request.getfixturevalue('redis_base_url')}/12"
        client = redis.Redis.from_url(url)
        client.flushdb()
        yield url
        client.flushdb()
        client.close()


async def running(*offloads: Offload) -> AsyncExitStack:
    stack = AsyncExitStack()
    for offload in offloads:
        await stack.enter_async_context(offload)
    return stack


# -- tick times --------------------------------------------------------------------------


def test_every_ticks_on_the_multiples_of_its_interval_in_every_process() -> None:
    every = Every(0.2)
    now = 1_796_000_000.123
    latest = every.latest(now)
    assert latest == round(now / 0.2 - 0.5) * 0.2 and latest <= now < latest + 0.2
    assert every.after(latest) == every.latest(latest + 0.2)  # the same float both ways
    ticks = [every.latest(now)]
    for _ in range(1000):
        ticks.append(every.after(ticks[-1]))
    assert all(every.latest(t) == t for t in ticks)  # exact: a tick is its own latest
    assert all(0.199 < b - a < 0.201 for a, b in itertools.pairwise(ticks))
    assert Every(300).latest(1_796_000_123.0) == 1_796_000_100.0
    assert [Every(s).text for s in (0.2, 90, 300, 7200)] == [
        "every 0.2 s",
        "every 90 s",
        "every 5 min",
        "every 2 h",
    ]


def test_cron_ticks_at_its_times_in_utc() -> None:
    cron = Cron("*/5 * * * *")
    at = 1_796_000_400.0  # 2026-11-29 ... :00, a multiple of 300 s
    assert cron.latest(at) == at and cron.latest(at + 299) == at
    assert cron.after(at) == at + 300 and cron.after(at - 0.5) == at
    assert Cron("0 3 * * *").after(at) % 86400 == 3 * 3600  # 03:00 UTC
    assert cron.text == "cron */5 * * * * (UTC)"


@pytest.mark.parametrize("expression", ["* * *", "61 * * * *", "every minute", ""])
def test_a_bad_cron_expression_is_a_config_error(expression: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a cron expression .* '\*/5 \* \* \* \*'"):
        Offload().cron(expression)


def test_cron_without_croniter_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)  # `import croniter` fails
    with pytest.raises(ImportError) as caught:
        Offload().cron("*/5 * * * *")
    assert install_hint("cron") in str(caught.value) and "[cron]" in str(caught.value)


# -- declaring ---------------------------------------------------------------------------


def test_the_decorated_function_is_returned_unchanged_and_still_callable() -> None:
    offload = Offload()
    assert offload.every(seconds=60, retries=2, timeout=5)(tick) is tick
    assert offload.cron("0 * * * *", lane="thread")(slow_tick) is slow_tick
    tick()
    assert len(RUNS) == 1 and len(offload._runtime.periodic) == 2


def test_what_every_process_could_not_find_by_name_is_refused() -> None:
    offload = Offload()

    def nested() -> None:
        pass

    refused: dict[str, Callable[..., Any]] = {
        "is a lambda": lambda: None,
        "is defined inside a function": nested,
        "is defined in a class": Jobs.method,
        "module-level function; got": Jobs().method,
    }
    for why, func in refused.items():
        with pytest.raises(NotOffloadable, match=why) as caught:
            offload.every(seconds=1)(func)
        assert "define it at module level" in str(caught.value)
    with pytest.raises(NotOffloadable, match=r"called with no arguments, and it takes \(path"):
        offload.every(seconds=1)(needs_an_argument)
    assert len(offload._runtime.periodic) == 0


def test_bad_settings_are_config_errors_naming_them() -> None:
    offload = Offload()
    with pytest.raises(ConfigError, match=r"every\(seconds=...\)=0 must be .* above 0"):
        offload.every(seconds=0)
    with pytest.raises(ConfigError, match=r"every\(\) got retrys=.* did you mean retries=\?"):
        offload.every(seconds=1, retrys=2)  # type: ignore[call-arg]  # the point of the test
    with pytest.raises(ConfigError, match="lane='gpu' is not a lane"):
        offload.every(seconds=1, lane="gpu")  # type: ignore[arg-type]  # the point
    with pytest.raises(ConfigError, match="catch_up='yes' must be True or False"):
        offload.cron("* * * * *", catch_up="yes")  # type: ignore[arg-type]  # the point
    offload.every(seconds=1)(tick)
    with pytest.raises(ConfigError, match=f"{NAME} is a periodic task of this Offload already"):
        offload.cron("* * * * *")(tick)


async def test_a_periodic_task_declared_while_the_offload_runs_is_refused() -> None:
    offload = Offload()
    offload.every(seconds=60)(slow_tick)
    async with offload:
        with pytest.raises(ConfigError, match="running already; declare periodic tasks at"):
            offload.every(seconds=1)(tick)
    offload.every(seconds=1)(tick)  # stopped: declared for its next start


# -- running -----------------------------------------------------------------------------


async def settled(offload: Offload) -> ScheduleInfo:
    """The one schedule once its last run succeeded: it may be under way when read."""
    for _ in range(500):
        [info] = await offload.schedules()
        if info.last_state is TaskState.SUCCEEDED:
            return info
        await anyio.sleep(0.02)
    raise AssertionError(f"no run succeeded within 10 s: {info}")


async def test_each_tick_runs_as_an_ordinary_task(store: str) -> None:
    offload = Offload(store=store, thread_workers=2)
    offload.every(seconds=0.2, retries=1)(tick)
    async with offload:
        await anyio.sleep(1.1)
        count = len(RUNS)
        info = await settled(offload)
        status = await offload.status(info.last_task_id or "")
    assert 2 <= count <= 7, RUNS  # ~5 ticks in 1.1 s on a quiet machine
    assert all(name.startswith("fastapi-offload thread lane") for _, name in RUNS)
    assert isinstance(info, ScheduleInfo) and info.name == NAME
    assert (info.schedule, info.catch_up, info.overlap) == ("every 0.2 s", False, False)
    assert status.state is TaskState.SUCCEEDED and info.to_dict()["last_state"] == "succeeded"
    assert (status.name, status.lane, status.attempts) == (NAME, "thread", 1)
    assert info.last_run is not None and info.next_run > info.last_run
    # The run started at (or just after) its tick: the tick is when it was due.
    assert status.created_at is not None and 0 <= status.created_at - info.last_run < 1
    assert any(0 <= when - info.last_run < 1 for when, _ in RUNS)


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)], indirect=True
)
async def test_runtimes_sharing_a_durable_store_run_each_tick_once(store: str) -> None:
    offloads = [Offload(store=store) for _ in range(3)]
    for offload in offloads:
        offload.every(seconds=0.2)(tick)
    async with await running(*offloads):
        await anyio.sleep(1.5)
    # 7 or 8 ticks in 1.5 s (fewer if the machine stalls): 3 runs each would be 21 or more.
    assert 4 <= len(RUNS) <= 9, RUNS


async def test_with_memory_stores_each_runtime_runs_every_tick() -> None:
    # What a durable store prevents (and what the start-up warning under --workers N is
    # about): the same test as above, the store left out.
    offloads = [Offload() for _ in range(3)]
    for offload in offloads:
        offload.every(seconds=0.2)(tick)
    async with await running(*offloads):
        await anyio.sleep(1.5)
    assert len(RUNS) >= 12, RUNS


@pytest.mark.parametrize("catch_up", [True, False])
async def test_a_tick_missed_while_no_process_ran_runs_once_at_start_up_with_catch_up(
    store: str, catch_up: bool, caplog: pytest.LogCaptureFixture
) -> None:
    offload = Offload(store=store)
    offload.every(seconds=3600, catch_up=catch_up)(tick)  # no tick of its own in the test
    hour = Every(3600).latest(time.time())
    async with AsyncExitStack() as stack:
        if store == "memory":
            seeded = offload._runtime.store
        else:
            seeded = Offload(store=store)._runtime.store  # another process, stopped since
            await seeded.open()
            stack.push_async_callback(seeded.close)
        # Its last run was 3 hours ago: 3 ticks missed, of which at most one runs.
        await seeded.claim_tick(NAME, hour - 3 * 3600, "long-ago", overlap=False)
    with caplog.at_level(logging.INFO, "fastapi_offload"):
        async with offload:
            await anyio.sleep(0.6)
            [info] = [await settled(offload)] if catch_up else await offload.schedules()
    assert len(RUNS) == (1 if catch_up else 0)
    if catch_up:
        assert info.last_run == hour and info.last_state is TaskState.SUCCEEDED
        assert "was missed while no process ran; it runs now (catch_up=True)" in caplog.text
    else:
        assert (info.last_run, info.last_task_id) == (hour - 3 * 3600, "long-ago")
        assert info.last_state is TaskState.UNKNOWN  # no row of it: the store forgot it
        assert "missed while no process ran; skipped (catch_up=False), next at" in caplog.text
    assert info.next_run == hour + 3600


async def test_a_first_start_runs_no_missed_tick_even_with_catch_up(store: str) -> None:
    offload = Offload(store=store)
    offload.every(seconds=3600, catch_up=True)(tick)
    async with offload:
        await anyio.sleep(0.4)
        [info] = await offload.schedules()
    assert RUNS == [] and (info.last_run, info.last_task_id, info.last_state) == (None,) * 3


async def test_a_tick_while_the_last_run_still_runs_is_skipped_with_a_warning(
    store: str, caplog: pytest.LogCaptureFixture
) -> None:
    offload = Offload(store=store)
    offload.every(seconds=0.2)(slow_tick)  # 0.5 s a run
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        async with offload:
            await anyio.sleep(1.3)
            [info] = await offload.schedules()
    skipped = [r.getMessage() for r in caplog.records if "is skipped" in r.getMessage()]
    assert MOST_AT_ONCE == 1 and skipped, caplog.text
    assert f"periodic task {__name__}.slow_tick: the tick of 20" in skipped[0]
    assert "is skipped: its previous run (task id " in skipped[0]
    assert "is still running; pass overlap=True to let runs overlap" in skipped[0]
    running_id = skipped[0].split("(task id ")[1].split(")")[0]
    assert len(running_id) == 32 and info.last_task_id is not None


async def test_overlap_true_lets_runs_overlap(store: str) -> None:
    offload = Offload(store=store)
    offload.every(seconds=0.2, overlap=True)(slow_tick)
    async with offload:
        await anyio.sleep(1.0)
    assert MOST_AT_ONCE >= 2


async def test_a_tick_finding_its_lane_full_is_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    offload = Offload(thread_workers=1, max_pending=1)
    offload.every(seconds=0.2, overlap=True)(blocking_tick)  # 1 running, 1 waiting, then full
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        async with offload:
            await anyio.sleep(0.9)
            stats = offload.stats().lanes["thread"]
    assert (stats.running, stats.waiting) == (1, 1)
    assert f"periodic task {__name__}.blocking_tick: the tick of" in caplog.text
    assert "is skipped: the thread lane is full (1 tasks waiting, max_pending=1)" in caplog.text


async def test_a_store_that_fails_skips_the_tick_and_scheduling_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    offload = Offload(store=f"sqlite:///{tmp_path / 'offload.db'}")
    offload.every(seconds=0.2)(tick)
    store = offload._runtime.store
    real = store.claim_tick
    failing = True

    async def claim_tick(*args: Any, **kwargs: Any) -> Any:
        if failing:
            raise StoreUnavailable("the task store is unavailable (a test)")
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, "claim_tick", claim_tick)
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        async with offload:
            await anyio.sleep(0.5)
            assert RUNS == []
            failing = False
            await anyio.sleep(0.5)
    assert RUNS
    assert "is skipped: the task store could not claim it: the task store is unavailable (a " in (
        caplog.text
    )


async def test_a_tick_being_claimed_at_shutdown_still_runs(
    store: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Claimed means no other process runs it: the stop waits for it to start, and the
    # drain for it to end, instead of leaving a claimed tick unrun.
    offload = Offload(store=store)
    offload.every(seconds=0.2)(tick)
    real, claiming = offload._runtime.store.claim_tick, anyio.Event()

    async def slow_claim(*args: Any, **kwargs: Any) -> Any:
        claiming.set()
        await anyio.sleep(0.3)
        return await real(*args, **kwargs)

    monkeypatch.setattr(offload._runtime.store, "claim_tick", slow_claim)
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        async with offload:
            await claiming.wait()
    assert len(RUNS) == 1 and "periodic task" not in caplog.text


async def test_with_a_remote_backend_each_tick_is_sent_there() -> None:
    backend = RecordingBackend()
    offload = Offload(backend=backend)
    offload.every(seconds=0.2)(tick)
    async with offload:
        await anyio.sleep(0.7)
        sent = backend.calls_to(tick)
    assert 2 <= len(sent) <= 5 and RUNS == []  # sent, not run here


async def test_the_last_run_sent_to_a_backend_has_the_backends_state() -> None:
    backend = RecordingBackend()
    offload = Offload(backend=backend)
    offload.every(seconds=3600, catch_up=True)(tick)  # one run: the catch-up at start-up
    hour = Every(3600).latest(time.time())
    await offload._runtime.store.claim_tick(NAME, hour - 3600, "earlier", overlap=False)
    async with offload:
        for _ in range(500):
            if backend.calls:
                break
            await anyio.sleep(0.02)
        [sent] = backend.calls_to(tick)
        await offload.cancel(sent.id)  # the backend's state, not the stored `pending`
        [info] = await offload.schedules()
    assert (info.last_task_id, info.last_run) == (sent.id, hour)
    assert info.last_state is TaskState.CANCELLED


def test_a_process_no_supervisor_started_is_the_only_worker() -> None:
    assert server_workers() == 1  # the real uvicorn cases: test_periodic_servers.py
