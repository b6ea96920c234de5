"""What every durable store promises, written once and run on each (`durable`: a real
SQLite file and a real Redis, shared by stores of different owners, i.e. processes);
the memory store too where the behaviour is its as well."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from typing import Any

import anyio
import pytest

from fastapi_offload._errors import StoreUnavailable
from fastapi_offload._models import TaskState
from fastapi_offload.stores.base import Orphan, Store

from .conftest import KINDS_AND_MEMORY
from .helpers import EXPIRY, RESULT_MAX, Durable, LaneFigures, figures, record, sleep_until

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_the_store_implements_the_protocol(durable: Durable) -> None:
    store: Store = await durable.open()  # mypy checks the protocol
    assert callable(store.put) and callable(store.evict)
    if durable.kind != "memory":
        assert store.durable and durable.shown in repr(store) and "'a'" in repr(store)


@pytest.mark.parametrize("durable", KINDS_AND_MEMORY, indirect=True)
async def test_an_evicted_task_is_forgotten(durable: Durable) -> None:
    a = await durable.open("a")
    a.put(record("x"))
    await a.flush()
    a.evict("x")
    await a.flush()
    assert await a.get("x") is None and len(a) == 0
    if durable.kind != "memory":
        assert await (await durable.open("b")).get("x") is None and durable.task_count() == 0


async def test_what_one_process_flushed_another_reads(durable: Durable) -> None:
    a, b = await durable.open("a"), await durable.open("b")
    a.put(record("live", TaskState.RUNNING, started_at=time.time(), attempts=1))
    a.put(record("done", TaskState.FAILED, error="ValueError('x')"))
    await a.flush()
    assert (info := await b.get("live")) is not None
    assert info.state is TaskState.RUNNING and info.attempts == 1 and info.lane == "thread"
    assert (info := await b.get("done")) is not None and info.error == "ValueError('x')"
    assert info == (await a.get("done"))  # times read back to the last digit
    assert [info.id for info in await b.active()] == ["live"]
    assert await b.get("never") is None and len(a) == 2


async def test_the_task_owner_travels_through_the_store(durable: Durable) -> None:
    a, b = await durable.open("a"), await durable.open("b")
    a.put(record("mine", TaskState.SUCCEEDED, owner="user-42"))
    a.put(record("nobodys", TaskState.SUCCEEDED))
    await a.flush()
    assert (info := await b.get("mine")) is not None and info.owner == "user-42"
    assert "owner" not in info.to_dict()  # never served by a status route
    assert (info := await b.get("nobodys")) is not None and info.owner is None


async def test_live_records_are_answered_from_memory(
    durable: Durable, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await durable.open()
    live = record("a")
    store.put(live)
    live.state = TaskState.RUNNING
    monkeypatch.setattr(store, "_fetch", lambda task_id: pytest.fail("queried the store"))
    # A snapshot of the last put, never the record (the ledger's): not current until put.
    assert (info := await store.get("a")) is not None and info.state is TaskState.PENDING
    store.put(live)
    assert (info := await store.get("a")) is not None and info.state is TaskState.RUNNING
    monkeypatch.undo()  # `active` reads the other owners' rows, and overlays this one's
    assert [info.state for info in await store.active()] == [TaskState.RUNNING]


async def test_finished_rows_are_pruned_by_capacity_oldest_first(durable: Durable) -> None:
    a, b = await durable.open("a", capacity=3), await durable.open("b")
    a.put(record("live"))
    for i in range(5):
        a.put(record(f"done{i}", TaskState.SUCCEEDED))
    await a.flush()
    assert await b.get("done0") is None and await b.get("done1") is None
    assert await b.get("done2") is not None and await b.get("live") is not None
    assert len(a) == 4 and durable.task_count() == 4


async def test_pruning_by_capacity_waits_for_a_5_percent_slack(durable: Durable) -> None:
    a = await durable.open("a", capacity=100)
    for i in range(105):  # 5 over: within the slack
        a.put(record(f"d{i}", TaskState.SUCCEEDED))
    await a.flush()
    assert durable.task_count() == 105
    a.put(record("d105", TaskState.SUCCEEDED))
    await a.flush()
    assert durable.task_count() == 100 and await a.get("d5") is None


async def test_finished_rows_are_pruned_by_retention(durable: Durable) -> None:
    a, b = await durable.open("a", retention=3600.0), await durable.open("b")
    a.put(record("old", TaskState.SUCCEEDED))
    a.put(record("live"))
    await a.flush()
    durable.age("old", 7200)  # finished two hours ago
    a.put(record("new", TaskState.SUCCEEDED))
    await a.flush()
    assert await b.get("old") is None and durable.owner_state("old") == (None, None)
    assert await b.get("new") is not None and await b.get("live") is not None


async def test_expired_leases_are_reclaimed_exactly_once_by_concurrent_reclaimers(
    durable: Durable,
) -> None:
    dead = await durable.open("worker-1", lease=0.05)
    ids = {f"t{i}" for i in range(200)}
    for task_id in ids:
        dead.put(record(task_id, TaskState.RUNNING))
    await dead.flush()
    await sleep_until(durable.lease_ends())
    stores = [await durable.open(f"r{i}", capacity=1000) for i in range(4)]
    results: dict[str, list[Orphan]] = {}

    async def reclaim(store: Any) -> None:
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
    assert durable.live_count() == 0 and durable.owned("worker-1") == set()


async def test_a_requeue_task_is_reclaimed_for_a_run_by_the_claimer(durable: Durable) -> None:
    dead = await durable.open("worker-1", lease=0.05)
    call = record("r", requeue=True, payload=b"pickled\x00call", timeout=5.0, retries=2)
    dead.put(call)
    await dead.flush()
    await sleep_until(durable.lease_ends())
    a, b = await durable.open("a"), await durable.open("b")
    assert await a.reclaim() == [
        Orphan(call.info(), requeued=True, payload=b"pickled\x00call", timeout=5.0, retries=2)
    ]
    assert durable.owner_state("r") == ("a", "pending")
    assert durable.lease_until("r") > time.time() + 30 and durable.owned("a") == {"r"}
    assert await b.reclaim() == []  # a holds it now, under a fresh lease


async def test_a_stalled_owner_does_not_take_back_a_reclaimed_task(durable: Durable) -> None:
    # Its event loop froze past the lease: another process reclaimed the task and runs
    # it again. The stalled process's late writes must not overwrite that claim.
    stalled = await durable.open("worker-1", lease=0.05)
    call = record("r", TaskState.RUNNING, requeue=True, payload=b"pickled call")
    stalled.put(call)
    await stalled.flush()
    await sleep_until(durable.lease_ends())
    claimer = await durable.open("a")
    assert [o.info.id for o in await claimer.reclaim()] == ["r"]
    call.state = TaskState.SUCCEEDED
    stalled.put(call)
    await stalled.flush()
    assert durable.owner_state("r") == ("a", "pending") and durable.owned("a") == {"r"}


async def test_a_stalled_owner_does_not_revive_a_task_settled_meanwhile(
    durable: Durable,
) -> None:
    # Found in review: a row with no owner (interrupted) took the stalled process's write.
    stalled = await durable.open("worker-1", lease=0.05)
    call = record("x", TaskState.RUNNING)
    stalled.put(call)
    await stalled.flush()
    await sleep_until(durable.lease_ends())
    claimer = await durable.open("a")
    assert [o.info.state for o in await claimer.reclaim()] == [TaskState.INTERRUPTED]
    stalled.put(call)  # still running, as far as the stalled process knows
    call.state = TaskState.SUCCEEDED
    stalled.put(call)
    await stalled.flush()
    assert durable.owner_state("x") == (None, "interrupted")


async def test_a_claim_not_taken_up_is_returned_by_the_next_reclaim(durable: Durable) -> None:
    # Found in review: the claim was committed, the caller never took it up (a reply
    # lost, or it failed after), and the row was renewed forever without running.
    dead = await durable.open("worker-1", lease=0.05)
    dead.put(record("r", TaskState.RUNNING, requeue=True, payload=b"call"))
    await dead.flush()
    await sleep_until(durable.lease_ends())
    claimer = await durable.open("a")
    assert [o.info.id for o in await claimer.reclaim()] == ["r"]  # ... never adopted
    again = await claimer.reclaim()
    assert [(o.info.id, o.requeued, o.payload) for o in again] == [("r", True, b"call")]


async def test_an_unexpired_lease_is_not_reclaimed(durable: Durable) -> None:
    alive = await durable.open("worker-1", lease=60.0)
    alive.put(record("x", TaskState.RUNNING))
    await alive.flush()
    b = await durable.open("b")
    assert await b.reclaim() == []
    assert (info := await b.get("x")) is not None and info.state is TaskState.RUNNING


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="boot ids: Linux only")
async def test_a_gone_owner_of_this_host_loses_its_lease_at_once_and_a_foreign_one_keeps_it(
    durable: Durable,
) -> None:
    # An owner id formed by a process that then died, and the same id from another host
    # (whose pid, looked up here, is just as absent): only this host's is judged gone.
    form = "from fastapi_offload.stores.lease_owner import new_owner_id; print(new_owner_id())"
    gone = (await anyio.run_process([sys.executable, "-c", form])).stdout.decode().strip()
    foreign = "elsewhere" + gone[gone.index(":") :]
    for owner, task_id in [(gone, "dead-here"), (foreign, "dead-elsewhere")]:
        store = await durable.open(owner, lease=60.0)
        store.owner = owner  # as that process (open gives a store of this one its own id)
        store.put(record(task_id, TaskState.RUNNING))
        await store.flush()
    b = await durable.open("b")
    orphans = await b.reclaim()
    assert [o.info.id for o in orphans] == ["dead-here"], "not reclaimed before its lease ran out"
    assert orphans[0].info.state is TaskState.INTERRUPTED
    assert f"({gone}) stopped before it finished: its process no longer runs on this host" in (
        orphans[0].info.error or ""
    )
    assert (info := await b.get("dead-elsewhere")) is not None and info.state is TaskState.RUNNING
    assert durable.owner_state("dead-elsewhere") == (foreign, "running")
    assert durable.lease_until("dead-elsewhere") > time.time() + 50
    # The gone owner's bookkeeping goes with its tasks; the foreign one's stays.
    assert durable.owned(gone) == set() and durable.owned(foreign) == {"dead-elsewhere"}
    assert await b.reclaim() == []


async def test_a_store_opened_in_another_process_than_its_owner_id_takes_its_own(
    durable: Durable,
) -> None:
    form = "from fastapi_offload.stores.lease_owner import new_owner_id; print(new_owner_id())"
    parents = (await anyio.run_process([sys.executable, "-c", form])).stdout.decode().strip()
    store = await durable.open(parents)
    assert store.owner != parents and store.owner.split(":")[1] == str(os.getpid())
    assert store.owner in repr(store._writes)


async def test_renew_keeps_a_lease_alive_past_its_first_expiry(durable: Durable) -> None:
    a = await durable.open("a", lease=0.5)
    a.put(record("x", TaskState.RUNNING))
    await a.flush()
    first_expiry = durable.lease_until("x")
    b = await durable.open("b")
    async with anyio.create_task_group() as group:

        async def heartbeat() -> None:  # as the runtime does, well within the lease
            while True:
                await a.renew()
                await anyio.sleep(0.05)

        group.start_soon(heartbeat)
        await sleep_until(first_expiry + 0.5)  # a whole lease past the first expiry
        assert await b.reclaim() == []
        group.cancel_scope.cancel()
    assert durable.lease_until("x") > first_expiry + 0.5


async def test_the_tasks_of_a_killed_process_are_interrupted(durable: Durable) -> None:
    store_kind = "sqlite" if durable.kind == "sqlite" else "redis"
    built = durable.constructor.format(
        at=str(durable.at), owner="killed", lease=0.2, capacity=10, retention=60
    )
    code = f"""
import asyncio, os, signal
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.{store_kind} import {built.partition("(")[0]}

async def main():
    store = {built}
    await store.open()
    store.put(TaskRecord("k", "jobs.f", "thread", print, (), {{}}, None, 0, 1.0))
    await store.flush()
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""
    process = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    store = await durable.open("a")
    await sleep_until(durable.lease_ends())  # its 0.2 s lease, from the row it committed
    orphans = await store.reclaim()
    assert [orphan.info.id for orphan in orphans] == ["k"]
    assert orphans[0].info.error is not None and "(killed)" in orphans[0].info.error
    assert (info := await store.get("k")) is not None and info.state is TaskState.INTERRUPTED


async def test_a_corrupted_row_reads_as_unknown_with_a_warning(
    durable: Durable, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await durable.open("a"), await durable.open("b")
    a.put(record("bad", TaskState.SUCCEEDED))
    a.put(record("live"))
    a.put(record("result", TaskState.SUCCEEDED, result="[1, 2]"))
    await a.flush()
    durable.corrupt("bad", "state", "nonsense")
    durable.corrupt("live", "created_at", "garbage")
    durable.corrupt("result", "result", "[1, 2")
    with caplog.at_level(logging.WARNING, logger="fastapi_offload"):
        assert await b.get("bad") is None and await b.get("result") is None
        assert await b.active() == []
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("status of task bad: " in m for m in warned)
    assert any("status of task live: " in m for m in warned)
    assert any("status of task result: " in m for m in warned)


async def test_close_writes_what_is_left(durable: Durable) -> None:
    a = await durable.open("a")
    a.put(record("x", TaskState.SUCCEEDED))
    await a.close()
    assert durable.owner_state("x") == (None, "succeeded")
    with anyio.fail_after(2), pytest.raises(StoreUnavailable, match="not open"):
        await a.flush()  # at once


# -- what the processes sharing the store tell each other (issue 19) ---------------------


async def test_each_process_publishes_its_figures_until_they_expire(durable: Durable) -> None:
    a = await durable.open("h1:11:x", lease=0.3)
    b = await durable.open("h2:22:y", lease=0.3)
    await a.renew(figures("h1", 11, running=1))
    await b.renew(figures("h2", 22))
    found = {p.label: p for p in await b.processes()}
    assert {label: p.here for label, p in found.items()} == {"h1:11": False, "h2:22": True}
    assert found["h1:11"].lanes == (LaneFigures("thread", 4, 1, 0), LaneFigures("process", 2, 0, 3))
    assert time.time() < durable.published_until("h1:11:x") <= time.time() + EXPIRY * 0.3
    # b stops renewing (killed): gone from every reader after EXPIRY_LEASES leases, and
    # deleted by the next process that publishes, so what is kept stays bounded.
    await anyio.sleep(0.3 * EXPIRY + 0.05)
    await a.renew(figures("h1", 11))
    assert [p.label for p in await a.processes()] == ["h1:11"]
    assert durable.published() == ["h1:11:x"]
    await a.close()  # a clean stop: gone at once
    assert durable.published() == []


async def test_published_figures_are_read_as_untrusted_input(
    durable: Durable, caplog: pytest.LogCaptureFixture
) -> None:
    a = await durable.open("h1:11:x")
    await a.renew(figures("h1", 11))
    forged: list[tuple[str, str | bytes]] = [
        ("long", json.dumps({"host": "x" * 5000})),  # past FIGURES_MAX: not even loaded
        ("pickle", b"\x80\x04\x95cos\nsystem\n."),  # bytes of a pickle, never unpickled
        ("types", json.dumps({"host": "h", "pid": True, "started_at": 1, "at": 1, "lanes": []})),
        ("lanes", json.dumps({"host": "h", "pid": 1, "started_at": 1, "at": 1, "lanes": [[1]]})),
    ]
    for owner, text in forged:
        durable.forge_figures(owner, text, time.time() + 60)
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        assert [p.label for p in await a.processes()] == ["h1:11"]
    assert len([r for r in caplog.records if "cannot read process" in r.message]) == 3


async def test_recent_tasks_name_their_process_and_come_cut(durable: Durable) -> None:
    a, b = await durable.open("h1:11:x"), await durable.open("h2:22:y")
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
    # Once settled, the row still names the process that ran it (its lease is cleared).
    assert durable.ran_by("done") == (None, "h1:11:x")
