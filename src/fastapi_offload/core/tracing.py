"""Optional OpenTelemetry: one span per local task (`Offload(tracing=True)`, extra `otel`).

The span is started inside the task's own asyncio task, whose context is a copy of the
request's (the runner creates it from the request's ASGI call), so with an instrumented
app (opentelemetry-instrumentation-fastapi) the task's span is a child of the request's
span, and spans the task makes itself (an instrumented HTTP client) are children of the
task's. Only `opentelemetry-api` is needed; without an SDK configured, spans are no-ops.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._errors import ConfigError
from .._extras import install_hint
from .._models import TaskState
from .._record import TaskRecord

__all__ = ["TaskTracer"]


class TaskTracer:
    """Opens and ends the span of one task run (all its attempts)."""

    def __init__(self) -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            raise ConfigError(
                f"tracing=True (OFFLOAD_TRACING) needs OpenTelemetry's API: {install_hint('otel')}"
            ) from None
        self._trace = trace
        self._tracer = trace.get_tracer("fastapi_offload")

    @contextmanager
    def span(self, record: TaskRecord) -> Iterator[None]:
        attributes = {
            "fastapi_offload.task.id": record.id,
            "fastapi_offload.task.name": record.name,
            "fastapi_offload.lane": record.lane,
        }
        with self._tracer.start_as_current_span(
            f"offload {record.name}",
            kind=self._trace.SpanKind.INTERNAL,
            attributes=attributes,
            # The task's outcome is the record's, set below: a cancellation at shutdown
            # is not an error, and a retried failure is an event, not the span's end.
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            finally:
                self._finish(span, record)

    def _finish(self, span: Any, record: TaskRecord) -> None:
        span.set_attribute("fastapi_offload.state", record.state.value)
        span.set_attribute("fastapi_offload.attempts", record.attempts)
        if record.state is TaskState.FAILED:
            status = self._trace.Status(self._trace.StatusCode.ERROR, record.error or "failed")
            span.set_status(status)
        elif record.state is TaskState.SUCCEEDED:
            span.set_status(self._trace.Status(self._trace.StatusCode.OK))
