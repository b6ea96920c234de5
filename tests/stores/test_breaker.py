"""The stores' circuit breaker: closed, open after a failure, one probe per cooldown."""

from __future__ import annotations

import logging

import pytest

from fastapi_offload.stores.breaker import Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_opens_it_and_one_probe_per_cooldown_goes_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    breaker = Breaker("task store X (reads)", cooldown=1.0, clock=clock)
    assert breaker.allow() and not breaker.blocked() and breaker.error is None
    caplog.set_level(logging.WARNING, logger="fastapi_offload")
    breaker.failed("TimeoutError: no answer")
    breaker.failed("TimeoutError: no answer")  # still open: not logged again
    assert breaker.error == "TimeoutError: no answer"
    assert breaker.blocked() and not breaker.allow()  # refused at once
    clock.now += 1.0
    assert not breaker.blocked()
    assert breaker.allow()  # the probe
    assert breaker.blocked() and not breaker.allow()  # one probe per cooldown
    clock.now += 1.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.error is None and breaker.allow() and breaker.allow()
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in logged] == ["ERROR", "WARNING"]  # once per outage
    assert "task store X (reads) failed: TimeoutError: no answer" in logged[0][1]
    assert "task store X (reads) answers again (it had failed: TimeoutError" in logged[1][1]


def test_a_failed_probe_keeps_it_open_for_another_cooldown() -> None:
    clock = Clock()
    breaker = Breaker("s", cooldown=2.0, clock=clock)
    breaker.failed("down")
    clock.now += 2.0
    assert breaker.allow()
    clock.now += 0.5
    breaker.failed("still down")
    clock.now += 1.9
    assert not breaker.allow() and breaker.error == "still down"
    clock.now += 0.1
    assert breaker.allow()
