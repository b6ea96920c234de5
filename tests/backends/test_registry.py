"""Worker-side registration: explicit, immutable, and refusing anything else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fastapi_offload import ConfigError
from fastapi_offload.backends import TaskRegistry, UnregisteredTask

from . import jobs


def test_a_module_registers_its_decorated_functions_only() -> None:
    registry = TaskRegistry(jobs)
    assert sorted(registry) == [
        "tests.backends.jobs.async_whoami",
        "tests.backends.jobs.fail",
        "tests.backends.jobs.flaky",
        "tests.backends.jobs.sleepy",
        "tests.backends.jobs.whoami",
    ]
    assert registry.resolve("tests.backends.jobs.whoami") is jobs.whoami


def test_a_function_listed_explicitly_is_registered_without_a_decorator() -> None:
    registry = TaskRegistry(jobs.not_registered)
    assert list(registry) == ["tests.backends.jobs.not_registered"]


def test_an_unknown_name_is_refused_with_the_registered_names() -> None:
    registry = TaskRegistry(jobs.whoami)
    with pytest.raises(UnregisteredTask) as caught:
        registry.resolve("os.system")
    message = str(caught.value)
    assert "'os.system'" in message and "tests.backends.jobs.whoami" in message
    with pytest.raises(UnregisteredTask):
        registry.resolve(None)


def test_nothing_to_register_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no tasks to register"):
        TaskRegistry()
    with pytest.raises(ConfigError, match="module json defines no function decorated"):
        TaskRegistry(json)


def test_functions_a_worker_could_not_find_by_name_are_refused() -> None:
    def local() -> None: ...

    with pytest.raises(ConfigError, match="inside another function"):
        TaskRegistry(local)
    with pytest.raises(ConfigError, match="lambda"):
        TaskRegistry(lambda: None)

    def script() -> None: ...

    script.__module__ = "__main__"
    script.__qualname__ = "script"
    with pytest.raises(ConfigError, match="__main__"):
        TaskRegistry(script)


def test_two_callables_under_one_name_is_a_config_error() -> None:
    def impostor(path: str) -> int:
        return 0

    impostor.__qualname__ = "whoami"
    impostor.__module__ = jobs.__name__
    with pytest.raises(ConfigError, match="two different callables"):
        TaskRegistry(jobs, impostor)


def test_a_target_that_is_not_callable_is_a_config_error() -> None:
    target: Any = 42
    with pytest.raises(ConfigError, match="pass a function or a module"):
        TaskRegistry(target)


def test_two_celery_worker_apps_in_one_process_run_only_their_own_tasks() -> None:
    # Celery tasks are "shared" by default: without shared=False the second app would
    # also get the first app's tasks, and its own of the same name would run the first
    # app's registry.
    from fastapi_offload.backends.celery import celery_worker_app

    from . import jobs

    first = celery_worker_app(jobs.whoami, broker_url="memory://", result_backend="cache+memory://")
    second = celery_worker_app(
        jobs.async_whoami, broker_url="memory://", result_backend="cache+memory://"
    )

    def ours(app: object) -> set[str]:
        return {name for name in app.tasks if not name.startswith("celery.")}  # type: ignore[attr-defined]

    assert ours(first) == {"tests.backends.jobs.whoami"}
    assert ours(second) == {"tests.backends.jobs.async_whoami"}
