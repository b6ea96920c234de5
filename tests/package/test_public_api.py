import fastapi_offload


def test_public_names_are_pinned() -> None:
    # Nothing becomes public by accident: a new name must be added here on purpose.
    assert sorted(fastapi_offload.__all__) == [
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
    for name in fastapi_offload.__all__:
        assert getattr(fastapi_offload, name) is not None


def test_errors_share_one_base() -> None:
    from fastapi_offload import (
        BackendUnavailable,
        ConfigError,
        NotOffloadable,
        OffloadClosed,
        OffloadError,
        QueueFull,
        StoreUnavailable,
        TaskTimeout,
        WorkerCrashed,
    )

    for error in (
        StoreUnavailable,
        BackendUnavailable,
        ConfigError,
        NotOffloadable,
        OffloadClosed,
        QueueFull,
        TaskTimeout,
        WorkerCrashed,
    ):
        assert issubclass(error, OffloadError)
    assert issubclass(NotOffloadable, TypeError)
    assert issubclass(ConfigError, ValueError)


def test_import_does_not_load_optional_backends() -> None:
    import subprocess
    import sys

    code = "import sys, fastapi_offload; print('celery' in sys.modules, 'rq' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_process_worker_does_not_import_fastapi() -> None:
    # A process-lane worker imports the trampoline and the user's job module (which
    # imports cpu_bound); neither needs FastAPI, and importing it would add ~0.2 s to
    # every worker start.
    import subprocess
    import sys

    code = (
        "import sys, fastapi_offload.lanes.process.worker; from fastapi_offload import cpu_bound; "
        "print('fastapi' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_names_load_on_first_use() -> None:
    import pytest

    assert "Offload" in dir(fastapi_offload)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        fastapi_offload.nope  # type: ignore[attr-defined]  # noqa: B018 - the access is the test


PUBLIC_MODULES = {
    "fastapi_offload.testing": ["InlineBackend", "RecordingBackend"],
    "fastapi_offload.backends": [
        "BACKENDS",
        "Serializer",
        "TaskRegistry",
        "UnregisteredTask",
        "check_call",
        "load_backend",
        "task_name",
    ],
    "fastapi_offload.backends.base": ["Backend", "BaseBackend"],
    "fastapi_offload.backends.celery": ["CeleryBackend", "SUBMITTED", "celery_worker_app"],
    "fastapi_offload.backends.rq": ["RQBackend", "rq_worker_class"],
}


def test_public_names_of_every_public_module_are_pinned() -> None:
    import importlib

    for name, expected in PUBLIC_MODULES.items():
        assert sorted(importlib.import_module(name).__all__) == expected, name


def test_public_classes_and_functions_report_a_public_module() -> None:
    # Tracebacks, reprs and the API docs show `fastapi_offload.Offload`, never the
    # private module that defines it.
    import importlib
    import inspect

    modules = {"fastapi_offload": fastapi_offload.__all__, **PUBLIC_MODULES}
    for module_name, names in modules.items():
        module = importlib.import_module(module_name)
        for name in names:
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                assert "._" not in f"{value.__module__}.", (module_name, name, value.__module__)
                assert value.__module__ in modules, (module_name, name, value.__module__)
