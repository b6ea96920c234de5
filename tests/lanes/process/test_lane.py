"""The process lane's isolation, driven through `ProcessLane` directly (no FastAPI).

A task may write to fd 1 or read fd 0 (anyio's pipes in the worker), and a timeout or a
crash kills the processes the task started, not only the worker.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from fastapi_offload._errors import RemoteError, WorkerCrashed
from fastapi_offload._record import TaskRecord
from fastapi_offload.lanes.process import board as _process_board
from fastapi_offload.lanes.process.lane import ProcessLane

from ...conftest import ROOT

pytestmark = [
    pytest.mark.anyio,
    # The tests watch processes through /proc and pidfds.
    pytest.mark.skipif(sys.platform != "linux", reason="Linux only"),
]

logger = logging.getLogger("tests.isolation")

# Generous bounds: they only stop a broken run from hanging, nothing is timed.
BOUND = 30.0


# Job functions: module-level, so the worker imports them by qualified name.


def record_pid(out: str) -> None:
    with open(out, "a") as file:
        file.write(f"{os.getpid()}\n")


def use_std_fds(out: str) -> None:
    subprocess.run(["echo", "hi"], check=True)  # a child writing to fd 1
    os.write(1, b"C code printing\n")  # what C code calling printf() does
    subprocess.run(["cat"], check=True)  # a child reading fd 0 to its end
    os.system("cat >/dev/null")
    # A chatty child on stderr (ffmpeg): more than a pipe holds, and nobody reads it.
    subprocess.run(["head", "-c", "300000", "/dev/zero"], stdout=2, check=True)
    os.write(2, b"x" * 200_000)
    record_pid(out)


def fail_noisily(message: str) -> None:
    logger.warning("failing on purpose")
    os.write(1, b"noise before the error\n")
    raise ValueError(message)


def _start_children(inbox: str) -> None:
    # A shell and its own child: the grandchild is reached only through the group. Both
    # inherit fds 0 and 1, as an ffmpeg would: were those anyio's pipes, the parent would
    # not see a crashed worker's pipe close until they exit. The pid comes back on fd 2.
    read, write = os.pipe()
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & echo $! >&2; wait"], stderr=write)
    os.close(write)
    with os.fdopen(read) as pipe:
        grandchild = pipe.readline().strip()
    # A datagram, so that the test waits on a socket, not by polling a file.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(f"{shell.pid} {grandchild}".encode(), inbox)


def start_children_and_sleep(inbox: str) -> None:
    _start_children(inbox)
    time.sleep(60)


def start_children_and_die(inbox: str) -> None:
    _start_children(inbox)
    os._exit(1)


# Helpers.


def lines(path: Path) -> list[str]:
    # Not `tests.helpers.lines`: that module imports FastAPI, and every worker imports
    # this module to find the job functions.
    return path.read_text().splitlines()


def _record(func: Callable[..., Any], *args: Any) -> TaskRecord:
    return TaskRecord(
        id=f"id-{func.__name__}",
        name=func.__name__,
        lane="process",
        func=func,
        args=args,
        kwargs={},
        timeout=None,
        retries=0,
        retry_delay=0.0,
    )


async def _pids(inbox: anyio.abc.UNIXDatagramSocket) -> list[int]:
    with anyio.fail_after(BOUND):
        data, _ = await inbox.receive()
    return [int(pid) for pid in data.split()]


def _alive(pid: int) -> bool:
    # A killed orphan stays a zombie until init reaps it, and init may never do so in a
    # container: a zombie is dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


async def _gone(pids: list[int]) -> None:
    """Wait (event-driven, through a pidfd) until every process in `pids` has exited."""
    with anyio.fail_after(10):
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                await anyio.wait_readable(fd)  # readable once the process has exited
            finally:
                os.close(fd)
    assert not any(_alive(pid) for pid in pids)


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Processes a test started; killed at the end if a failing lane left them running."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


async def _still_works(lane: ProcessLane, tmp_path: Path) -> None:
    out = tmp_path / "after.txt"
    await lane.execute(_record(record_pid, str(out)))
    assert lines(out)


# Tests.


async def test_a_task_may_use_fds_0_1_and_2_and_the_worker_lives_on(
    tmp_path: Path,
) -> None:
    out = tmp_path / "pids.txt"
    lane = ProcessLane(1, "normal")
    with anyio.fail_after(BOUND):  # the old lane hung here, or read "hi" as its answer
        await lane.execute(_record(use_std_fds, str(out)))
        await lane.execute(_record(record_pid, str(out)))
    first, second = lines(out)
    assert first == second != str(os.getpid())  # the same worker answered both calls
    assert lane.crashed == 0


async def test_an_exception_in_the_task_raises_remote_error_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lane = ProcessLane(1, "normal")
    record = _record(fail_noisily, "bad input")
    with anyio.fail_after(BOUND), pytest.raises(RemoteError) as caught:
        await lane.execute(record)
    assert repr(caught.value) == "ValueError('bad input')"
    assert "in fail_noisily\n    raise ValueError(message)" in caught.value.traceback_text
    [log] = [r for r in caplog.records if r.name == "tests.isolation"]
    assert log.getMessage() == "failing on purpose"
    assert getattr(log, "offload_task_id", None) == record.id
    assert lane.crashed == 0


async def test_a_timeout_kills_the_processes_the_task_started(
    tmp_path: Path, leftovers: list[int]
) -> None:
    path = tmp_path / "inbox"
    lane = ProcessLane(1, "normal")
    scope = anyio.move_on_after(BOUND)

    async def attempt() -> None:
        with scope:
            await lane.execute(_record(start_children_and_sleep, str(path)))

    async with (
        await anyio.create_unix_datagram_socket(local_path=path) as inbox,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(attempt)
        leftovers += await _pids(inbox)
        scope.deadline = anyio.current_time()  # the timeout fires now
    assert scope.cancelled_caught
    await _gone(leftovers)
    with anyio.fail_after(BOUND):
        await _still_works(lane, tmp_path)


async def test_a_timeout_kills_only_its_own_task_s_processes(
    tmp_path: Path, leftovers: list[int]
) -> None:
    paths = [tmp_path / "inbox0", tmp_path / "inbox1"]
    lane = ProcessLane(2, "normal")
    scopes = [anyio.move_on_after(BOUND), anyio.move_on_after(BOUND)]

    async def attempt(index: int) -> None:
        with scopes[index]:
            await lane.execute(_record(start_children_and_sleep, str(paths[index])))

    async with (
        await anyio.create_unix_datagram_socket(local_path=paths[0]) as inbox0,
        await anyio.create_unix_datagram_socket(local_path=paths[1]) as inbox1,
        anyio.create_task_group() as tg,
    ):
        for index in range(2):
            tg.start_soon(attempt, index)
        first, second = await _pids(inbox0), await _pids(inbox1)
        leftovers += first + second
        scopes[0].deadline = anyio.current_time()
        await _gone(first)
        assert all(_alive(pid) for pid in second)
        scopes[1].deadline = anyio.current_time()
    await _gone(second)


async def test_a_crash_kills_the_processes_the_task_started(
    tmp_path: Path, leftovers: list[int]
) -> None:
    path = tmp_path / "inbox"
    lane = ProcessLane(1, "normal")

    async def collect() -> None:
        leftovers.extend(await _pids(inbox))

    async with (
        await anyio.create_unix_datagram_socket(local_path=path) as inbox,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(collect)  # beside the attempt: a hung attempt still names them
        with anyio.fail_after(BOUND), pytest.raises(WorkerCrashed, match="died"):
            await lane.execute(_record(start_children_and_die, str(path)))
    await _gone(leftovers)
    assert lane.crashed == 1
    with anyio.fail_after(BOUND):
        await _still_works(lane, tmp_path)


async def test_the_slot_board_is_removed_with_the_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory of this test's own, where the lane's board is the only file.
    boards = tmp_path / "boards"
    boards.mkdir()
    monkeypatch.setattr(_process_board, "board_directory", lambda: str(boards))
    lane = ProcessLane(1, "normal")
    with anyio.fail_after(BOUND):
        await lane.execute(_record(record_pid, str(tmp_path / "out")))
    [board] = list(boards.iterdir())
    del lane
    gc.collect()
    assert not await anyio.Path(board).exists()


_KILLED_PARENT = """
import os, signal, sys
import anyio
from fastapi_offload.lanes.process import board as _process_board
from fastapi_offload.lanes.process.lane import ProcessLane
from tests.lanes.process.test_lane import _record, record_pid

_process_board.board_directory = lambda: sys.argv[2]

async def main() -> None:
    lane = ProcessLane(1, "normal")
    await lane.execute(_record(record_pid, sys.argv[1]))
    [board] = os.listdir(sys.argv[2])  # the lane's, in a directory of the test's own
    print(os.path.join(sys.argv[2], board), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no exit hook runs

anyio.run(main)
"""


async def test_a_board_left_by_a_killed_parent_is_removed_by_the_next_lane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory of this test's own: any process that starts a lane in /dev/shm (other
    # xdist workers, other test runs on the machine) would sweep the left board first.
    boards = tmp_path / "boards"
    boards.mkdir()
    monkeypatch.setattr(_process_board, "board_directory", lambda: str(boards))
    with anyio.fail_after(BOUND):
        killed = await anyio.run_process(
            [sys.executable, "-c", _KILLED_PARENT, str(tmp_path / "out"), str(boards)],
            cwd=ROOT,
            check=False,
        )
    assert killed.returncode == -signal.SIGKILL
    left = killed.stdout.decode().strip()
    assert await anyio.Path(left).exists()
    lane = ProcessLane(1, "normal")
    with anyio.fail_after(BOUND):
        await lane.execute(_record(record_pid, str(tmp_path / "out")))
    assert not await anyio.Path(left).exists()
