"""fastapi-offload: background work that never freezes your FastAPI event loop."""

from ._declare import TaskDefaults as TaskDefaults
from ._declare import cpu_bound as cpu_bound
from ._declare import io_bound as io_bound
from ._declare import task as task
from ._errors import BackendUnavailable as BackendUnavailable
from ._errors import ConfigError as ConfigError
from ._errors import NotOffloadable as NotOffloadable
from ._errors import OffloadClosed as OffloadClosed
from ._errors import OffloadError as OffloadError
from ._errors import QueueFull as QueueFull
from ._errors import TaskTimeout as TaskTimeout
from ._errors import WorkerCrashed as WorkerCrashed
from ._models import LaneStats as LaneStats
from ._models import OffloadStats as OffloadStats
from ._models import TaskCall as TaskCall
from ._models import TaskHandle as TaskHandle
from ._models import TaskInfo as TaskInfo
from ._models import TaskState as TaskState
from ._offload import Offload as Offload
from ._tasks import OffloadTasks as OffloadTasks
from .backends.base import Backend as Backend
from .backends.base import BaseBackend as BaseBackend

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailable",
    "BaseBackend",
    "ConfigError",
    "LaneStats",
    "NotOffloadable",
    "Offload",
    "OffloadClosed",
    "OffloadError",
    "OffloadStats",
    "OffloadTasks",
    "QueueFull",
    "TaskCall",
    "TaskDefaults",
    "TaskHandle",
    "TaskInfo",
    "TaskState",
    "TaskTimeout",
    "WorkerCrashed",
    "__version__",
    "cpu_bound",
    "io_bound",
    "task",
]
