"""The ledger (`core/ledger.py`): the one owner of task state, and its counters."""

from __future__ import annotations

import ast
import threading

import anyio
import pytest

from fastapi_offload import Offload, QueueFull, TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload.core.bounds import LaneBounds
from fastapi_offload.core.ledger import Ledger
from fastapi_offload.stores.memory import MemoryStore

from ..apps import jobs
from ..conftest import ROOT

pytestmark = pytest.mark.anyio
SRC = ROOT / "src" / "fastapi_offload"


def make(max_pending: int = 10) -> Ledger:
    return Ledger(
        MemoryStore(100),
        {
            "loop": LaneBounds(max_pending, max_pending, bound_counts_running=True),
            "thread": LaneBounds(2, max_pending),
        },
    )


def record(lane: str = "thread", task_id: str = "t1") -> TaskRecord:
    return TaskRecord(task_id, "jobs.f", lane, print, (), {}, None, 0, 1.0)


def counts(ledger: Ledger, lane: str = "thread") -> tuple[int, int, int, int, int, int]:
    s = ledger.lane_stats(lane)
    return (s.waiting, s.running, s.succeeded, s.failed, s.cancelled, s.retried)


def test_only_the_ledger_assigns_a_records_state() -> None:
    writers = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "state":
                    writers.add(path.relative_to(SRC).as_posix())
    assert writers == {"core/ledger.py"}


async def test_a_task_moves_through_its_transitions_and_the_counters_follow() -> None:
    ledger = make()
    task = record()
    ledger.admit(task)
    assert (task.state, counts(ledger)) == (TaskState.PENDING, (1, 0, 0, 0, 0, 0))
    ledger.started(task)
    assert (task.state, task.attempts, counts(ledger)) == (TaskState.RUNNING, 1, (0, 1, 0, 0, 0, 0))
    ledger.retrying(task, ValueError("once"), 1.0)
    assert (task.state, task.error) == (TaskState.PENDING, "ValueError('once')")
    assert counts(ledger) == (1, 0, 0, 0, 0, 1)
    ledger.started(task)
    ledger.succeeded(task)
    assert (task.state, task.attempts, task.error) == (TaskState.SUCCEEDED, 2, None)
    assert counts(ledger) == (0, 0, 1, 0, 0, 1)
    assert task.finished_at is not None and ledger.active == 0
    assert (info := await ledger.store.get("t1")) is not None and info.state is TaskState.SUCCEEDED


def test_a_second_end_is_ignored() -> None:
    ledger = make()
    task = record()
    ledger.admit(task)
    ledger.started(task)
    ledger.cancelled(task, "cancelled at shutdown")
    ledger.failed(task, RuntimeError("late"))  # the race of an end with a cancel
    assert (task.state, task.error) == (TaskState.CANCELLED, "cancelled at shutdown")
    assert counts(ledger) == (0, 0, 0, 0, 1, 0)


def test_a_pending_task_that_fails_to_start_leaves_no_waiting_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = make()
    task = record()
    ledger.admit(task)
    ledger.failed(task, "could not start: the runtime had shut down")
    assert counts(ledger) == (0, 0, 0, 1, 0, 0)
    assert "jobs.f (id t1, thread lane): could not start" in caplog.text


async def test_discarded_tasks_are_forgotten() -> None:
    ledger = make()
    task = record()
    ledger.admit(task)
    ledger.discarded(task)
    ledger.discarded(task)  # twice is harmless
    assert counts(ledger) == (0, 0, 0, 0, 0, 0) and ledger.active == 0
    assert await ledger.store.get("t1") is None


def test_admission_is_bounded_per_lane() -> None:
    ledger = make(max_pending=2)
    ledger.admit(record(task_id="a"))
    ledger.admit(record(task_id="b"))
    with pytest.raises(QueueFull, match=r"thread lane is full \(2 tasks waiting"):
        ledger.admit(record(task_id="c"))
    # The loop lane counts running coroutines too; the thread lane only waiting ones.
    loop_task = record("loop", "l1")
    ledger.admit(loop_task)
    ledger.started(loop_task)
    ledger.admit(record("loop", "l2"))
    with pytest.raises(QueueFull, match="2 tasks waiting or running"):
        ledger.admit(record("loop", "l3"))


def test_a_remote_task_handed_off_is_settled_and_kept() -> None:
    ledger = make()
    task = record("celery")
    ledger.admit(task)
    assert ledger.active == 1
    ledger.handed_off(task)
    assert ledger.active == 0 and task.handed_off and task.state is TaskState.PENDING


async def test_join_wakes_when_the_last_task_settles_even_from_another_thread() -> None:
    ledger = make()
    task = record()
    ledger.admit(task)
    thread = threading.Thread(target=ledger.failed, args=(task, "could not start"))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(ledger.join)
            await anyio.lowlevel.checkpoint()
            thread.start()
    thread.join()
    assert ledger.active == 0


def test_observers_hear_every_transition_and_a_broken_one_is_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heard: list[tuple[str, str]] = []

    class Listener:
        def observe(self, event: str, record: TaskRecord) -> None:
            heard.append((event, record.state.value))

    class Broken:
        def observe(self, event: str, record: TaskRecord) -> None:
            raise RuntimeError("oops")

    ledger = make()
    ledger.add_observer(Listener())
    ledger.add_observer(Broken())
    task = record()
    ledger.admit(task)
    ledger.started(task)
    ledger.retrying(task, ValueError("once"), 0.0)
    ledger.started(task)
    ledger.succeeded(task)
    assert heard == [
        ("admitted", "pending"),
        ("started", "running"),
        ("retrying", "pending"),
        ("started", "running"),
        ("finished", "succeeded"),
    ]
    assert "observer" in caplog.text and "oops" in caplog.text


async def test_max_pending_bounds_running_coroutines_too() -> None:
    async with Offload(max_pending=2) as offload:
        await offload.submit(jobs.async_sleep, 0.3)
        await offload.submit(jobs.async_sleep, 0.3)
        # Counted whether they have started yet or not: no wait needed here.
        with pytest.raises(QueueFull, match="2 tasks waiting or running"):
            await offload.submit(jobs.async_sleep, 0.3)
        await offload.join()
