"""The dashboard's view of every process sharing a durable store: their recent tasks and
their lane figures, each labelled by process (host:pid). Without a shared store the page
says that it shows this process only.

What the store returns was written by other processes: `stores.peers` has checked and cut it,
and the reads go through the store's timeouts and breaker.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from ..._errors import StoreUnavailable
from ..._models import OffloadStats
from ...core.runtime import Runtime
from ...stores.peers import ProcessFigures, StoredTask

__all__ = ["SharedView", "newest", "this_process"]

LIVE_STATES = ("scheduled", "pending", "running")


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class SharedView:
    """What the store says about the other processes (empty without a shared store)."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @classmethod
    async def read(cls, runtime: Runtime, known: set[str], shown: int, now: float) -> SharedView:
        view = cls()
        label = this_process()
        figures: list[ProcessFigures] = []
        if runtime.store.durable:
            try:
                stored = await runtime.store.recent(shown)
                figures = await runtime.store.processes()
            except StoreUnavailable as exc:  # the page shows why (no password, no 503)
                view.error = f"the task store is unavailable: {exc.cause or exc}"
            except Exception as exc:  # the page must show an unreachable store, not fail
                view.error = str(exc) or repr(exc)
            else:
                view.tasks = [_row(task, now) for task in stored if task.id not in known]
        # This process from its own counters (current); the others as they published.
        mine = next((f for f in figures if f.here), None)
        view.processes = [_mine(label, runtime.stats(), mine)] + [
            _theirs(f) for f in figures if not f.here
        ]
        return view


def newest(tasks: list[dict[str, Any]], shown: int) -> list[dict[str, Any]]:
    """The `shown` newest tasks, newest first; live ones are always among them."""
    ordered = sorted(tasks, key=lambda task: -(task["created_at"] or 0.0))  # stable
    live = [task for task in ordered if task["live"]][:shown]
    room = shown - len(live)
    kept = {id(task) for task in live + [t for t in ordered if not t["live"]][:room]}
    return [task for task in ordered if id(task) in kept]


def _mine(label: str, stats: OffloadStats, published: ProcessFigures | None) -> dict[str, Any]:
    return {
        "process": label,
        "here": True,
        "started_at": published.started_at if published else None,
        # Current, not published: None, or every poll of an idle page would send a patch.
        "at": None,
        "lanes": [
            {"name": name, "capacity": x.capacity, "running": x.running, "waiting": x.waiting}
            for name, x in stats.lanes.items()
        ],
    }


def _theirs(figures: ProcessFigures) -> dict[str, Any]:
    return {
        "process": figures.label,
        "here": False,
        "started_at": figures.started_at,
        "at": figures.at,
        "lanes": [
            {"name": x.name, "capacity": x.capacity, "running": x.running, "waiting": x.waiting}
            for x in figures.lanes
        ],
    }


def _row(task: StoredTask, now: float) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "lane": task.lane,
        "state": task.state,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "attempts": task.attempts,
        "retries": None,
        "error": task.error,
        "result": task.result,
        "progress": task.progress,
        "progress_message": task.progress_message,
        "live": task.state in LIVE_STATES,
        "duration": None
        if task.started_at is None
        else (task.finished_at or now) - task.started_at,
        # Mostly another process sharing the store; or this one, past what its feed keeps.
        "here": task.here,
        "process": task.process,
    }
