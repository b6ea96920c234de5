"""Periodic tasks' ticks in each store: claimed once (a compare-and-set of the last tick
per name), the overlap check against the stored task rows, and the last runs read back."""

from __future__ import annotations

import logging
import sqlite3
import time

import anyio
import pytest

from fastapi_offload._models import TaskState

from .conftest import KINDS_AND_MEMORY
from .helpers import Durable, P, RedisDatabase, SqliteFile, record

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_a_tick_is_claimed_once_and_only_forward(durable: Durable) -> None:
    store = await durable.open()
    assert (await store.claim_tick("jobs.f", 100.0, "t1", overlap=False)).claimed
    again = [await store.claim_tick("jobs.f", t, "t2", overlap=False) for t in (100.0, 99.5)]
    assert [claim.claimed for claim in again] == [False, False]
    assert (await store.claim_tick("jobs.g", 100.0, "t3", overlap=False)).claimed  # per name
    assert (await store.claim_tick("jobs.f", 100.2, "t4", overlap=False)).claimed
    found = await store.ticks(["jobs.f", "jobs.g", "jobs.none"])
    assert {name: (t.tick, t.task_id, t.task_tick) for name, t in found.items()} == {
        "jobs.f": (100.2, "t4", 100.2),
        "jobs.g": (100.0, "t3", 100.0),
    }
    assert await store.ticks([]) == {}


async def test_processes_racing_for_each_tick_take_it_once_between_them(durable: Durable) -> None:
    stores = [await durable.open(owner) for owner in "abcd"]
    won: dict[float, list[str]] = {}

    async def claim(owner: str, tick: float) -> None:
        store = stores["abcd".index(owner)]
        if (await store.claim_tick("jobs.f", tick, f"{owner}-{tick}", overlap=False)).claimed:
            won.setdefault(tick, []).append(owner)

    for tick in (1.0, 2.0, 3.0, 4.0, 5.0):
        async with anyio.create_task_group() as group:
            for owner in "abcd":
                group.start_soon(claim, owner, tick)
    assert sorted(won) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(len(owners) == 1 for owners in won.values()), won
    [last] = (await stores[0].ticks(["jobs.f"])).values()
    assert last.task_id == f"{won[5.0][0]}-5.0"


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_a_tick_while_the_last_run_is_live_is_taken_without_a_task(
    durable: Durable,
) -> None:
    store = await durable.open()
    assert (await store.claim_tick("jobs.f", 10.0, "first", overlap=False)).claimed
    store.put(record("first", TaskState.RUNNING))
    await store.flush()
    skipped = await store.claim_tick("jobs.f", 11.0, "second", overlap=False)
    assert (skipped.claimed, skipped.running) == (True, "first")
    # The skipped tick is taken (no other process runs it); the last run stays the first.
    assert not (await store.claim_tick("jobs.f", 11.0, "other", overlap=False)).claimed
    [last] = (await store.ticks(["jobs.f"])).values()
    assert (last.tick, last.task_id, last.task_tick, last.state) == (11.0, "first", 10.0, "running")
    # overlap=True starts one anyway; a finished last run never blocks a tick.
    overlapping = await store.claim_tick("jobs.f", 12.0, "third", overlap=True)
    assert (overlapping.claimed, overlapping.running) == (True, None)
    store.put(record("third", TaskState.SUCCEEDED))
    await store.flush()
    after = await store.claim_tick("jobs.f", 13.0, "fourth", overlap=False)
    assert (after.claimed, after.running) == (True, None)


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_the_last_runs_carry_their_tasks_state_and_lane(durable: Durable) -> None:
    store = await durable.open()
    await store.claim_tick("jobs.f", 10.0, "done", overlap=False)
    await store.claim_tick("jobs.g", 10.0, "never-written", overlap=False)
    store.put(record("done", TaskState.FAILED, lane="process"))
    await store.flush()
    found = await store.ticks(["jobs.f", "jobs.g"])
    assert (found["jobs.f"].state, found["jobs.f"].lane) == ("failed", "process")
    assert (found["jobs.g"].state, found["jobs.g"].lane) == (None, None)  # no row: unknown
    assert abs(found["jobs.f"].claimed_at - time.time()) < 60


async def test_another_process_reads_the_last_runs(durable: Durable) -> None:
    a, b = await durable.open("a"), await durable.open("b")
    await a.claim_tick("jobs.f", 10.0, "x", overlap=False)
    a.put(record("x", TaskState.RUNNING))
    await a.flush()
    [last] = (await b.ticks(["jobs.f"])).values()
    assert (last.task_id, last.state, last.lane) == ("x", "running", "thread")
    # ... and sees it live: a tick of b's is skipped while a's run is running.
    assert (await b.claim_tick("jobs.f", 11.0, "y", overlap=False)).running == "x"


async def test_a_task_handed_to_a_backend_never_blocks_a_tick(durable: Durable) -> None:
    store = await durable.open()
    await store.claim_tick("jobs.f", 10.0, "sent", overlap=False)
    store.put(record("sent", TaskState.PENDING, handed_off=True, lane="celery"))
    await store.flush()
    claim = await store.claim_tick("jobs.f", 11.0, "next", overlap=False)
    assert (claim.claimed, claim.running) == (True, None)


async def test_a_tick_written_by_someone_else_is_skipped_with_a_warning(
    durable: Durable, caplog: pytest.LogCaptureFixture
) -> None:
    store = await durable.open()
    await store.claim_tick("jobs.f", 10.0, "x", overlap=False)
    await store.claim_tick("jobs.g", 10.0, "y", overlap=False)
    if isinstance(durable, SqliteFile):
        with sqlite3.connect(durable.path) as conn:
            conn.execute("UPDATE ticks SET tick = 'soon' WHERE name = 'jobs.f'")
        conn.close()
    else:
        assert isinstance(durable, RedisDatabase)
        durable.client.hset(f"{P}:tick:jobs.f", "tick", "soon")
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        found = await store.ticks(["jobs.f", "jobs.g"])
    assert list(found) == ["jobs.g"]
    assert "cannot read the tick of" in caplog.text and "jobs.f" in caplog.text
