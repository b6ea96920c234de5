"""fastapi-offload: background work that never freezes your FastAPI event loop.

Names load on first use (PEP 562): a process-lane worker imports the trampoline
without importing FastAPI, so a new worker starts in a fraction of the time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._context import cancelled as cancelled
    from ._context import report_progress as report_progress
    from ._decorators import TaskDefaults as TaskDefaults
    from ._decorators import cpu_bound as cpu_bound
    from ._decorators import io_bound as io_bound
    from ._decorators import task as task
    from ._errors import BackendUnavailable as BackendUnavailable
    from ._errors import ConfigError as ConfigError
    from ._errors import KeyConflict as KeyConflict
    from ._errors import NotOffloadable as NotOffloadable
    from ._errors import OffloadClosed as OffloadClosed
    from ._errors import OffloadError as OffloadError
    from ._errors import QueueFull as QueueFull
    from ._errors import StoreUnavailable as StoreUnavailable
    from ._errors import TaskTimeout as TaskTimeout
    from ._errors import WorkerCrashed as WorkerCrashed
    from ._models import LaneStats as LaneStats
    from ._models import OffloadStats as OffloadStats
    from ._models import ScheduleInfo as ScheduleInfo
    from ._models import TaskCall as TaskCall
    from ._models import TaskHandle as TaskHandle
    from ._models import TaskInfo as TaskInfo
    from ._models import TaskState as TaskState
    from ._offload import Offload as Offload
    from .backends.base import Backend as Backend
    from .backends.base import BaseBackend as BaseBackend
    from .web.dependency import OffloadTasks as OffloadTasks

__version__ = "0.1.0"
"""The installed version of fastapi-offload."""

# Public name -> private module that defines it.
_MODULES: dict[str, str] = {
    "cancelled": "._context",
    "report_progress": "._context",
    "TaskDefaults": "._decorators",
    "cpu_bound": "._decorators",
    "io_bound": "._decorators",
    "task": "._decorators",
    "BackendUnavailable": "._errors",
    "ConfigError": "._errors",
    "KeyConflict": "._errors",
    "NotOffloadable": "._errors",
    "OffloadClosed": "._errors",
    "OffloadError": "._errors",
    "QueueFull": "._errors",
    "StoreUnavailable": "._errors",
    "TaskTimeout": "._errors",
    "WorkerCrashed": "._errors",
    "LaneStats": "._models",
    "OffloadStats": "._models",
    "ScheduleInfo": "._models",
    "TaskCall": "._models",
    "TaskHandle": "._models",
    "TaskInfo": "._models",
    "TaskState": "._models",
    "Offload": "._offload",
    "OffloadTasks": ".web.dependency",
    "Backend": ".backends.base",
    "BaseBackend": ".backends.base",
}

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BaseBackend",
    "ConfigError",
    "KeyConflict",
    "LaneStats",
    "NotOffloadable",
    "Offload",
    "OffloadClosed",
    "OffloadError",
    "OffloadStats",
    "OffloadTasks",
    "QueueFull",
    "ScheduleInfo",
    "StoreUnavailable",
    "TaskCall",
    "TaskDefaults",
    "TaskHandle",
    "TaskInfo",
    "TaskState",
    "TaskTimeout",
    "WorkerCrashed",
    "__version__",
    "cancelled",
    "cpu_bound",
    "io_bound",
    "report_progress",
    "task",
]


if not TYPE_CHECKING:  # hidden from type checkers, so a misspelt name is still an error

    def __getattr__(name: str) -> Any:
        module = _MODULES.get(name)
        if module is None:
            raise AttributeError(f"module 'fastapi_offload' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value


def __dir__() -> list[str]:
    return sorted(__all__)
