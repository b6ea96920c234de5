"""`web.sse`: the framing and the loop shape of both event streams (status, dashboard),
on a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fastapi_offload.web import sse


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [100.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(sse, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(sse, "anyio", SimpleNamespace(sleep=sleep))
    return now


def test_an_event_is_framed_as_the_standard_says() -> None:
    assert sse.event("status", sse.encode({"a": [1, 2]})) == 'event: status\ndata: {"a":[1,2]}\n\n'
    assert sse.event("end", "{}", event_id="end") == "id: end\nevent: end\ndata: {}\n\n"


@pytest.mark.anyio
async def test_a_quiet_stream_keeps_alive_then_ends_after_stream_max(clock: list[float]) -> None:
    looks: list[float] = []
    closed: list[bool] = []

    async def look() -> tuple[str | None, str | None]:
        looks.append(clock[0])
        return ("event: x\ndata: 1\n\n" if len(looks) == 1 else None), None

    body = sse.paced(look, poll=1.0, stream_max=25.0, on_close=lambda: closed.append(True))
    sent = [(clock[0] - 100.0, text) async for text in body]
    assert sent == [
        (0.0, f"retry: {sse.RETRY}\n\n"),
        (0.0, "event: x\ndata: 1\n\n"),
        (10.0, ": keep-alive\n\n"),  # KEEP_ALIVE seconds of silence
        (20.0, ": keep-alive\n\n"),
    ]
    assert len(looks) == 26 and closed == [True]  # one look a poll, up to stream_max


@pytest.mark.anyio
async def test_a_last_event_ends_the_stream_and_a_closed_one_runs_on_close(
    clock: list[float],
) -> None:
    async def ends() -> tuple[str | None, str | None]:
        return "event: s\ndata: 1\n\n", "event: end\ndata: 2\n\n"

    sent = [text async for text in sse.paced(ends, poll=1.0, stream_max=30.0)]
    assert sent[1:] == ["event: s\ndata: 1\n\n", "event: end\ndata: 2\n\n"]

    closed: list[bool] = []

    async def never() -> tuple[str | None, str | None]:
        return None, None

    # A client that leaves: Starlette stops iterating and the generator is closed.
    body = sse.paced(never, poll=1.0, stream_max=30.0, on_close=lambda: closed.append(True))
    assert await body.__anext__() == f"retry: {sse.RETRY}\n\n"
    await body.aclose()
    assert closed == [True]
