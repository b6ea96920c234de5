"""Loop-block detection (`lanes/monitor.py`): a step that holds the loop is named."""

from __future__ import annotations

import time

import anyio
import pytest

from fastapi_offload.lanes.monitor import LoopMonitor

pytestmark = pytest.mark.anyio


async def blocks(seconds: float) -> str:
    await anyio.lowlevel.checkpoint()
    time.sleep(seconds)  # noqa: ASYNC251 - holding the loop is the point
    await anyio.lowlevel.checkpoint()
    return "done"


async def test_a_blocking_step_is_reported_with_name_id_and_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = LoopMonitor(0.05)
    monitor.start()
    try:
        assert await monitor.timed(blocks(0.3), "jobs.blocks", "id1") == "done"
    finally:
        monitor.stop()
    assert monitor.blocks == 1 and monitor.longest >= 0.3
    [report] = [r.getMessage() for r in caplog.records]
    assert "task jobs.blocks (id id1) held the event loop" in report
    assert "test_monitor.py" in report  # where the step ended
    assert "Stack while the loop was blocked" in report and "time.sleep" in report


async def test_short_steps_are_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LoopMonitor(1.0)
    assert await monitor.timed(blocks(0), "jobs.blocks", "id2") == "done"
    assert monitor.blocks == 0 and caplog.records == []


async def test_exceptions_pass_through_the_step_timer() -> None:
    async def fails() -> None:
        await anyio.lowlevel.checkpoint()
        raise GeneratorExit

    with pytest.raises(GeneratorExit):
        await LoopMonitor(1.0).timed(fails(), "jobs.fails", "id3")


async def test_the_watchdog_runs_only_while_steps_run_and_samples_after_a_quiet_spell(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A thread that wakes 20 times a second costs every request of a busy server: it is
    # started by the first step and leaves when the loop lane has been quiet a while.
    monitor = LoopMonitor(0.05)
    monitor.IDLE = 0.2
    monitor.start()
    try:
        assert not monitor.watching  # armed, not running: no step yet
        assert await monitor.timed(blocks(0), "jobs.short", "id4") == "done"
        assert monitor.watching
        for _ in range(100):  # quiet for IDLE (0.2 s): it leaves
            if not monitor.watching:
                break
            await anyio.sleep(0.05)
        assert not monitor.watching
        # The next step starts it again, and a block is still sampled.
        assert await monitor.timed(blocks(0.3), "jobs.blocks", "id5") == "done"
    finally:
        monitor.stop()
    assert not monitor.watching
    [report] = [r.getMessage() for r in caplog.records]
    assert "Stack while the loop was blocked" in report and "time.sleep" in report
