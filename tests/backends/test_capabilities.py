"""What a backend can do besides the protocol (`backends/base.py`), read once by the
remote lane: declared on a `BaseBackend`, or found on a protocol-only backend."""

from __future__ import annotations

import pytest

from fastapi_offload import BaseBackend, TaskCall, TaskInfo
from fastapi_offload.backends.base import capabilities_of
from fastapi_offload.testing import RecordingBackend

pytestmark = pytest.mark.anyio


class _Declared(BaseBackend):
    name = "declared"
    cancels = True

    async def submit(self, call: TaskCall) -> None:
        return None

    async def status(self, task_id: str) -> TaskInfo | None:
        return None


class _Overrides(_Declared):
    cancels = False  # not declared, but `cancel` and `workers` are overridden

    async def cancel(self, task_id: str) -> bool:
        return task_id == "known"

    async def workers(self) -> int | None:
        return 3


class _ProtocolOnly:
    name = "bare"

    def prepare(self, call: TaskCall) -> None:
        return None

    async def submit(self, call: TaskCall) -> None:
        return None

    async def status(self, task_id: str) -> TaskInfo | None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def cancel(self, task_id: str) -> bool:
        return True


async def test_a_base_backend_declares_nothing_until_it_says_so() -> None:
    class Plain(_Declared):
        cancels = False

    plain = capabilities_of(Plain())
    assert plain.cancel is None and plain.workers is None
    declared = capabilities_of(_Declared())
    assert declared.cancel is not None and declared.workers is None
    assert await declared.cancel("x") is False  # BaseBackend's cancel, declared on


async def test_overriding_a_method_declares_it() -> None:
    found = capabilities_of(_Overrides())
    assert found.cancel is not None and found.workers is not None
    assert await found.cancel("known") is True and await found.workers() == 3


async def test_a_protocol_only_backend_is_asked_for_the_methods_it_has() -> None:
    found = capabilities_of(_ProtocolOnly())
    assert found.cancel is not None and found.workers is None


def test_the_shipped_backends_declare_what_they_do() -> None:
    recording = capabilities_of(RecordingBackend())
    assert recording.cancel is not None and recording.workers is None
    pytest.importorskip("celery")
    pytest.importorskip("rq")
    from fastapi_offload.backends.celery import CeleryBackend
    from fastapi_offload.backends.rq import RQBackend

    assert CeleryBackend.cancels and CeleryBackend.counts_workers
    assert RQBackend.cancels and RQBackend.counts_workers
