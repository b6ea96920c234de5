"""`Offload(tracing=True)`: an OpenTelemetry span per local task, a child of the request's."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fastapi_offload import ConfigError, Offload, OffloadTasks
from fastapi_offload._decorators import LaneName

from ..apps import progress_jobs as jobs

pytestmark = pytest.mark.anyio

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    # The global provider can be set once per process: this module is its only user.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        sdk = TracerProvider()
        sdk.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(sdk)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER


def ours(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("offload ")]


@pytest.mark.parametrize("lane", ["loop", "thread", "process"])
async def test_each_task_gets_one_span_with_its_outcome(
    lane: LaneName, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    func: Any = jobs.answer_async if lane == "loop" else jobs.answer
    async with Offload(tracing=True) as offload:
        good = await offload.options(lane=lane).submit(func, 1)
        bad = await offload.options(
            lane="thread" if lane == "loop" else lane, retries=1, retry_delay=0
        ).submit(jobs.fail_with, "value", str(tmp_path / "attempts"))
        await offload.join()
    found = {s.attributes["fastapi_offload.task.id"]: s for s in ours(spans) if s.attributes}
    assert set(found) == {good.id, bad.id}
    ok, failed = found[good.id], found[bad.id]
    assert ok.name == f"offload {good.name}"
    assert ok.status.status_code is trace.StatusCode.OK
    assert ok.attributes is not None and ok.attributes["fastapi_offload.state"] == "succeeded"
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["fastapi_offload.attempts"] == 2
    assert "ValueError" in (failed.status.description or "")


class RequestSpans:
    """What an instrumentation middleware does: the whole ASGI call inside a span."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with trace.get_tracer("test").start_as_current_span(f"{scope['method']} {scope['path']}"):
            await self.app(scope, receive, send)


async def test_a_tasks_span_is_a_child_of_its_requests(spans: InMemorySpanExporter) -> None:
    offload = Offload(tracing=True)
    app = FastAPI(lifespan=offload.lifespan)

    @app.post("/work")
    async def work(tasks: OffloadTasks) -> str:
        return tasks.add_task(jobs.answer_async, 1).id

    transport = httpx.ASGITransport(app=RequestSpans(app))
    async with (
        offload.lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        task_id = (await client.post("/work")).json()
        await offload.join()
    request = next(s for s in spans.get_finished_spans() if s.name == "POST /work")
    (task,) = ours(spans)
    assert task.attributes is not None and task.attributes["fastapi_offload.task.id"] == task_id
    assert task.parent is not None and request.context is not None
    assert task.parent.span_id == request.context.span_id
    assert task.context is not None and task.context.trace_id == request.context.trace_id


async def test_without_tracing_no_span_is_made(spans: InMemorySpanExporter) -> None:
    async with Offload() as offload:
        await offload.submit(jobs.answer, 1)
        await offload.join()
    assert ours(spans) == []


def test_tracing_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"tracing=True \(OFFLOAD_TRACING\) needs .*\[otel\]"):
        Offload(tracing=True)
