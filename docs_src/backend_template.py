"""A remote backend in one file: tasks queued in a SQLite table, run by a worker process.

Copy it and replace the SQLite calls with your queue's client. The web process uses
`SQLiteBackend`; a separate process runs `Worker(path, my_tasks).run_forever()`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from types import ModuleType
from typing import Any

import anyio
import anyio.to_thread

from fastapi_offload import BackendUnavailable, BaseBackend, TaskCall, TaskInfo, TaskState
from fastapi_offload.backends import TaskRegistry, UnregisteredTask, check_call

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, args TEXT NOT NULL, kwargs TEXT NOT NULL,
    retries INTEGER NOT NULL, retry_delay REAL NOT NULL, not_before REAL NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL
)
"""


@contextmanager
def connect(path: str) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, timeout=3, isolation_level=None)) as db:  # autocommit
        db.row_factory = sqlite3.Row
        yield db


class SQLiteBackend(BaseBackend):
    """The web side: `prepare` checks a call, `submit` enqueues it, `status` reads it back."""

    name = "sqlite"  # shown as the task's lane

    def __init__(self, path: str, *, max_threads: int = 4) -> None:
        self.path = path
        # sqlite3 blocks: every call runs in a thread, never on the event loop, and
        # this limiter keeps the backend off anyio's default thread pool.
        self._limiter = anyio.CapacityLimiter(max_threads)

    def prepare(self, call: TaskCall) -> None:
        # Inside add_task, on the event loop: cheap checks only, no I/O. The same check
        # as Celery's and RQ's: a name a worker can look up, JSON arguments; it raises
        # NotOffloadable naming the argument that cannot travel.
        check_call(call, backend=self.name, serializer="json")

    async def start(self) -> None:
        await anyio.to_thread.run_sync(self._run_sql, SCHEMA, (), limiter=self._limiter)

    async def submit(self, call: TaskCall) -> None:
        # Before the response: when this returns, the queue holds the task.
        now = time.time()
        args, kwargs = json.dumps(call.args), json.dumps(dict(call.kwargs))
        params = (call.id, call.name, args, kwargs, call.retries, call.retry_delay, now, now)
        sql = "INSERT INTO tasks (id, name, args, kwargs, retries, retry_delay, not_before, "
        sql += "created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')"
        await anyio.to_thread.run_sync(self._run_sql, sql, params, limiter=self._limiter)

    async def status(self, task_id: str) -> TaskInfo | None:
        row = await anyio.to_thread.run_sync(self._fetch, task_id, limiter=self._limiter)
        if row is None:
            return None  # not ours to vouch for: the status says `unknown`
        return TaskInfo(
            id=row["id"],
            name=row["name"],
            state=TaskState(row["state"]),
            lane=self.name,
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            attempts=row["attempts"],
            error=row["error"],
        )

    def _run_sql(self, sql: str, params: tuple[Any, ...]) -> None:
        try:
            with connect(self.path) as db:
                db.execute(sql, params)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"the task database {self.path} failed: {exc}") from exc

    def _fetch(self, task_id: str) -> sqlite3.Row | None:
        try:
            with connect(self.path) as db:
                row: sqlite3.Row | None = db.execute(
                    "SELECT * FROM tasks WHERE id = ?", (task_id,)
                ).fetchone()
                return row
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"the task database {self.path} failed: {exc}") from exc


class Worker:
    """The worker side: runs only the functions it was given, looked up by name."""

    def __init__(self, path: str, *targets: ModuleType | Callable[..., Any]) -> None:
        self.path = path
        # Functions, or modules whose @task / @cpu_bound / @io_bound functions count,
        # under the names the web process sends (`module.qualname`). A row can only
        # pick one of these: nothing is imported because a row names it.
        self.registry = TaskRegistry(*targets)

    def run_once(self) -> bool:
        """Run one due task, if there is one; return whether there was.

        Timeouts are not enforced here: a real queue's worker (RQ, Celery) kills a task
        that runs past `call.timeout`.
        """
        now = time.time()
        with connect(self.path) as db:
            # Claim one task atomically, so several workers can share the table.
            row = db.execute(
                "UPDATE tasks SET state = 'running', attempts = attempts + 1, "
                "started_at = coalesce(started_at, ?) WHERE id = (SELECT id FROM tasks "
                "WHERE state = 'pending' AND not_before <= ? ORDER BY created_at LIMIT 1) "
                "RETURNING *",
                (now, now),
            ).fetchone()
            if row is None:
                return False
            state, error, not_before = "succeeded", None, now
            try:
                func = self.registry.resolve(row["name"])
            except UnregisteredTask as exc:
                state, error = "failed", str(exc)
            else:
                try:
                    func(*json.loads(row["args"]), **json.loads(row["kwargs"]))
                except Exception as exc:
                    retry = row["attempts"] <= row["retries"]
                    state, error = ("pending" if retry else "failed"), repr(exc)
                    not_before = time.time() + row["retry_delay"]
            finished = None if state == "pending" else time.time()
            db.execute(
                "UPDATE tasks SET state = ?, error = ?, finished_at = ?, not_before = ? "
                "WHERE id = ?",
                (state, error, finished, not_before, row["id"]),
            )
            return True

    def run_forever(self, poll: float = 0.5) -> None:
        while True:
            if not self.run_once():
                time.sleep(poll)
