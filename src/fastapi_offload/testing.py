"""Test doubles for the remote backends, and pytest fixtures that provide them.

- `InlineBackend` runs each task at once, in the test process, during `submit`,
  after the same argument check and JSON round trip a real worker would apply.
- `RecordingBackend` runs nothing: it records each `TaskCall` for assertions, and
  can play a broker that is down.

Use them in code, `Offload(backend=RecordingBackend())`, or by configuration,
`OFFLOAD_BACKEND=inline` / `OFFLOAD_BACKEND=recording` (then `offload.backend` is
the instance). The fixtures `inline_backend` and `recording_backend` give a fresh
one per test; enable them in your `conftest.py` with::

    pytest_plugins = ["fastapi_offload.testing"]
"""

from __future__ import annotations

from collections.abc import Iterator

from .backends._inline import InlineBackend
from .backends._recording import RecordingBackend

__all__ = ["InlineBackend", "RecordingBackend"]

# Tracebacks, reprs and the API docs show this public path; the doubles are Backend
# implementations, so they live beside the adapters (backends/), below every layer that
# uses them.
for _public in (InlineBackend, RecordingBackend):
    _public.__module__ = __name__
del _public


try:
    import pytest
except ImportError:  # pragma: no cover - the doubles work without pytest
    pass
else:

    @pytest.fixture
    def recording_backend() -> Iterator[RecordingBackend]:
        """A fresh `RecordingBackend` for one test."""
        yield RecordingBackend()

    @pytest.fixture
    def inline_backend() -> Iterator[InlineBackend]:
        """A fresh `InlineBackend` (no registration check) for one test."""
        yield InlineBackend()
