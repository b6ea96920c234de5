"""Contract: what the Celery backend (`backends/celery/results.py`) uses of Celery that is
not documented API.

- `write_marker` writes a submitted task's record (`SENT`) with one `set` on a key-value
  result store (`BaseKeyValueStoreBackend.set`, `.get_key_for_task`, `.encode`),
  building the record itself instead of `store_result`'s read-then-write: that record
  must stay the one Celery writes and reads.

No broker or Redis is needed: Celery's in-memory cache result store is a key-value
store too. A failure here means a Celery release changed one of them: adapt
`backends/celery/results.py`, then the verified versions in pyproject.toml
(`celery<...`) and docs/quickstart.md (Install).
"""

from __future__ import annotations

from importlib.metadata import version

from celery import Celery
from celery.backends.base import BaseKeyValueStoreBackend

from fastapi_offload._models import TaskCall
from fastapi_offload.backends.celery.results import SUBMITTED, write_marker

CELERY = version("celery")


def changed(api: str) -> str:
    return (
        f"Celery {CELERY} changed {api}, which fastapi-offload's Celery backend "
        "(backends/celery/results.py, `write_marker`) writes directly. Adapt it to this "
        "Celery, or keep `celery` below this version in pyproject.toml until it is, and "
        "update the verified versions in docs/quickstart.md (Install)."
    )


def test_a_marker_written_in_one_set_reads_as_celery_s_own_record() -> None:
    app = Celery("contract", backend="cache+memory://")
    store = app.backend
    assert isinstance(store, BaseKeyValueStoreBackend), changed("the cache store's base class")
    for method in ("set", "get_key_for_task", "encode"):
        assert callable(getattr(store, method, None)), changed(f"{method}() of a key-value store")
    ours, theirs = "a" * 32, "b" * 32
    write_marker(store, TaskCall(id=ours, name="jobs.send"), 12.5)
    marker = {"name": "jobs.send", "submitted_at": 12.5}
    store.store_result(theirs, marker, SUBMITTED)  # what Celery itself writes
    mine, celery_s = store.get_task_meta(ours), store.get_task_meta(theirs)
    assert mine["status"] == SUBMITTED and mine["result"] == marker, changed("the record read back")
    assert mine.keys() == celery_s.keys(), changed(f"a result record's fields ({sorted(celery_s)})")
    # `children` is [] here and None from `store_result` without a task request: both read
    # as no children.
    for field in ("status", "result", "traceback", "date_done"):
        assert mine[field] == celery_s[field], changed(f"a result record's {field!r}")
    app.close()
