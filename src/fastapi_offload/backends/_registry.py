"""Worker side: the explicit set of callables a worker agrees to run, by registered name.

A broker message only carries a name. The worker looks that name up in a
`TaskRegistry` built from what its own module lists; a name that is not there is
refused. Nothing is imported because a message asks for it, so whoever can write
to the broker can run the app's tasks and nothing else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

from .._decorators import declared
from .._errors import ConfigError, OffloadError

__all__ = ["TaskRegistry", "UnregisteredTask", "task_name"]

Target = ModuleType | Callable[..., Any]


class UnregisteredTask(OffloadError, LookupError):
    """A broker message named a callable that this worker does not run.

    Raised on the worker, which refuses the message; the task ends `failed` with
    this error (RQ) or is discarded with an error log line (Celery).
    """


def task_name(func: Callable[..., Any]) -> str:
    """The name a callable travels under: `module.qualname`, as `Offload` submits it."""
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname:
        raise ConfigError(
            f"{func!r} has no __module__/__qualname__; register a function defined with `def`"
        )
    return f"{module}.{qualname}"


def check_travelling_name(name: str) -> str | None:
    """Why a function with this name cannot be found by a separate worker, or None."""
    if name.startswith("__main__."):
        return (
            "it is defined in the __main__ script, which a worker process cannot import; "
            "move it to an importable module (e.g. myapp/jobs.py)"
        )
    if "<locals>" in name or "<lambda>" in name:
        return (
            "it is a lambda or is defined inside another function; "
            "define it at module level so the worker can register it by name"
        )
    return None


class TaskRegistry(Mapping[str, Callable[..., Any]]):
    """An immutable map from registered name to callable, built from explicit targets.

    Each target is a function (registered whatever its decorators) or a module
    (every function defined in it that carries a `@task`, `@cpu_bound` or
    `@io_bound` declaration). Raises `ConfigError` when a target registers
    nothing, cannot be found by name, or two callables claim one name.
    """

    def __init__(self, *targets: Target) -> None:
        if not targets:
            raise ConfigError(
                "no tasks to register: pass the task functions or the modules that define "
                "them, e.g. celery_worker_app(myapp.jobs) or rq_worker_class(myapp.jobs)"
            )
        found: dict[str, Callable[..., Any]] = {}
        for target in targets:
            for func in _functions_of(target):
                name = task_name(func)
                problem = check_travelling_name(name)
                if problem:
                    raise ConfigError(f"cannot register {name}: {problem}")
                other = found.setdefault(name, func)
                if other is not func:
                    raise ConfigError(
                        f"two different callables are registered as {name}; "
                        "give them different names"
                    )
        self._tasks = found

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self._tasks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"TaskRegistry({', '.join(sorted(self._tasks))})"

    def resolve(self, name: object) -> Callable[..., Any]:
        """The callable registered as `name`; raises `UnregisteredTask` otherwise."""
        func = self._tasks.get(name) if isinstance(name, str) else None
        if func is None:
            raise UnregisteredTask(
                f"refused a message for {name!r}: it is not a task this worker runs "
                f"(registered: {', '.join(sorted(self._tasks))}). If it should run here, "
                "add it (or its module) to the worker module's registration."
            )
        return func


def _functions_of(target: Target) -> list[Callable[..., Any]]:
    if isinstance(target, ModuleType):
        funcs: list[Callable[..., Any]] = [
            value
            for value in vars(target).values()
            if inspect.isfunction(value)
            and value.__module__ == target.__name__
            and declared(value) is not None
        ]
        if not funcs:
            raise ConfigError(
                f"module {target.__name__} defines no function decorated with "
                "@task, @cpu_bound or @io_bound; decorate the task functions or list them "
                "one by one"
            )
        return funcs
    if callable(target):
        return [target]
    raise ConfigError(f"cannot register {target!r}: pass a function or a module")
