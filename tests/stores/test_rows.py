"""The row codec (`stores/rows.py`): what a record says, field by field."""

from __future__ import annotations

from fastapi_offload._models import TaskState
from fastapi_offload._record import TaskRecord
from fastapi_offload.stores.rows import COLUMNS, Row, leased, row_of


def record() -> TaskRecord:
    # Every field a distinct value, so that a value in the wrong place shows.
    found = TaskRecord("t1", "jobs.f", "thread", print, (), {}, 7.5, 3, 0.25)
    found.state, found.started_at, found.attempts = TaskState.RUNNING, 2.0, 1
    found.created_at, found.error, found.requeue, found.payload = 1.0, "boom", True, b"call"
    found.progress, found.progress_message, found.owner = 0.5, "half", "user-1"
    found.key, found.due_at, found.result = "order-1", 9.0, '"r"'
    return found


def test_a_live_record_is_a_row_leased_to_its_owner_field_by_field() -> None:
    row = row_of(record(), "proc-a", 30.0, 100.0)
    assert type(row) is Row and len(row) == len(COLUMNS)
    assert row._asdict() == {
        "id": "t1", "name": "jobs.f", "lane": "thread", "state": TaskState.RUNNING,
        "created_at": 1.0, "started_at": 2.0, "finished_at": None, "attempts": 1,
        "error": "boom", "owner": "proc-a", "lease_until": 130.0, "handed_off": False,
        "requeue": True, "payload": b"call", "timeout": 7.5, "retries": 3,
        "retry_delay": 0.25, "settled_at": None, "result": '"r"', "progress": 0.5,
        "progress_message": "half", "task_owner": "user-1", "ran_by": "proc-a",
        "task_key": "order-1", "due_at": 9.0,
    }  # fmt: skip


def test_a_settled_record_is_leased_to_nobody_and_a_lease_changes_only_the_lease() -> None:
    settled = record()
    settled.state, settled.finished_at = TaskState.SUCCEEDED, 3.0
    row = row_of(settled, "proc-a", 30.0, 100.0)
    assert (row.owner, row.lease_until, row.payload, row.settled_at) == (None, None, None, 100.0)
    live = row_of(record(), "proc-a", 30.0, 100.0)
    moved = leased(live, 555.0)
    assert type(moved) is Row and moved.lease_until == 555.0
    assert moved._replace(lease_until=130.0) == live
