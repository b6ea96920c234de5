import fastapi_offload


def test_public_names_are_pinned() -> None:
    # Nothing becomes public by accident: a new name must be added here on purpose.
    assert sorted(fastapi_offload.__all__) == [
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
        TaskTimeout,
        WorkerCrashed,
    )

    for error in (
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
        "import sys, fastapi_offload._process; from fastapi_offload import cpu_bound; "
        "print('fastapi' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_names_load_on_first_use() -> None:
    import pytest

    assert "Offload" in dir(fastapi_offload)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        fastapi_offload.nope  # type: ignore[attr-defined]  # noqa: B018 - the access is the test
