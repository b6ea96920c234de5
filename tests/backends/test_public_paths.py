"""What the backend modules make public, and the path tracebacks and docs show for it.

The adapters are split into private modules (`backends.rq.jobs`, `backends.rq.worker`,
`backends.celery.results`, `backends.celery.worker`); users import from
`fastapi_offload.backends.rq` / `.celery` only.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import ModuleType

import pytest

from fastapi_offload.backends import celery, rq

from . import jobs
from .conftest import ROOT

PUBLIC: list[tuple[ModuleType, list[str], list[str]]] = [
    # module, __all__, other names importable from it since before the split
    (celery, ["CeleryBackend", "SUBMITTED", "celery_worker_app"], ["task_info"]),
    (rq, ["RQBackend", "rq_worker_class"], ["job_info"]),
]


@pytest.mark.parametrize(("module", "exported", "also"), PUBLIC, ids=["celery", "rq"])
def test_public_names_are_defined_at_the_public_path(
    module: ModuleType, exported: list[str], also: list[str]
) -> None:
    assert sorted(module.__all__) == sorted(exported)
    for name in [*exported, *also]:
        value = getattr(module, name)
        if callable(value):
            assert value.__module__ == module.__name__, name
    assert celery.SUBMITTED == "SENT"


def test_what_the_workers_build_names_the_public_modules() -> None:
    assert rq.rq_worker_class(jobs).__module__ == "fastapi_offload.backends.rq"
    # In a fresh process: the tasks of a second worker app built in this one would
    # collide with those of the app test_celery builds (they are Celery "shared" tasks).
    code = textwrap.dedent(
        """
        from fastapi_offload.backends.celery import celery_worker_app
        from tests.backends import jobs
        app = celery_worker_app(jobs, broker_url="memory://", result_backend="cache+memory://")
        print(type(app.tasks["tests.backends.jobs.whoami"]).__module__)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert out.strip() == "fastapi_offload.backends.celery"


@pytest.mark.parametrize(("public", "other"), [("celery", "rq"), ("rq", "celery")])
def test_one_adapter_does_not_import_the_other_library(public: str, other: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import fastapi_offload.backends.{public}
        print(sorted(m for m in sys.modules if m.split(".")[0] == "{other}"))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
