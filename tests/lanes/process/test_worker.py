"""The process lane's workers (`lanes/process/worker.py`), through `Offload`: keyword
arguments, logs, crashes, timeouts, priority, pre-started workers, and their lifetime."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import anyio.to_process
import pytest

from fastapi_offload import Offload, TaskState

from ...apps import jobs
from ...conftest import StartServer
from ...helpers import lines

pytestmark = pytest.mark.anyio


async def test_keyword_arguments_travel_and_the_task_runs_in_another_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out.txt"
    async with Offload() as offload:
        handle = await offload.submit(jobs.write_in_process, str(out), "hello", suffix="!")
        await offload.join()
        info = await offload.status(handle.id)
    assert handle.lane == "process" and info.state is TaskState.SUCCEEDED
    text, pid = lines(out)[0].split()
    assert text == "hello!" and int(pid) != os.getpid()
    # The worker's log record reached this process's logging, under its own logger name.
    [record] = [r for r in caplog.records if r.name == "tests.jobs"]
    assert record.getMessage() == "writing hello from the worker"
    assert record.process == int(pid)


async def test_an_exception_in_the_worker_fails_the_task_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Offload() as offload:
        handle = await offload.submit(jobs.fail_in_process, "bad input")
        await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.FAILED and info.error == "ValueError('bad input')"
    assert "in fail_in_process\n    raise ValueError(message)" in caplog.text


async def test_a_worker_that_dies_fails_its_task_and_the_next_task_runs(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    async with Offload(process_workers=1) as offload:
        died = await offload.submit(jobs.die)
        await offload.join()
        after = await offload.submit(jobs.write_in_process, str(out), "after")
        await offload.join()
        died_info, after_info = await offload.status(died.id), await offload.status(after.id)
    assert died_info.state is TaskState.FAILED
    assert died_info.error is not None and "WorkerCrashed" in died_info.error
    assert "died (killed, crashed or out of memory)" in died_info.error
    assert after_info.state is TaskState.SUCCEEDED and lines(out)
    assert offload.stats().process_crashes == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child stays a zombie until reaped; it no longer runs.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


async def test_a_timeout_kills_the_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    async with Offload() as offload:
        started = time.monotonic()
        handle = await offload.options(timeout=3).submit(jobs.hang, 60, str(pid_file))
        with anyio.fail_after(30):
            await offload.join()
        info = await offload.status(handle.id)
    assert info.state is TaskState.FAILED
    assert (
        info.error is not None
        and "TaskTimeout" in info.error
        and "worker process and the processes it started were killed" in info.error
    )
    assert time.monotonic() - started < 30
    assert not _alive(int(pid_file.read_text()))


async def test_workers_run_at_low_priority_by_default(tmp_path: Path) -> None:
    out = tmp_path / "nice"
    async with Offload() as offload:
        await offload.submit(jobs.report_nice, str(out))
        await offload.join()
    assert int(out.read_text()) >= os.nice(0) + 10 or int(out.read_text()) == 19


def _children() -> list[str]:
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "anyio.to_process" in cmdline:
                found.append(pid)
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
async def test_prestart_starts_the_workers_with_the_app() -> None:
    before = set(_children())
    async with Offload(prestart_workers=True, process_workers=2) as offload:
        started = set(_children()) - before
        assert len(started) >= 2 or len(set(_children())) >= 2
        assert offload.stats().lanes["process"].running == 0


def test_an_unguarded_main_module_gets_a_clear_startup_error(tmp_path: Path) -> None:
    # anyio starts each worker by re-running the program's main module: a script that
    # starts its event loop at module level breaks every worker.
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "import anyio\n"
        "from fastapi_offload import Offload\n\n"
        "async def main() -> None:\n"
        "    async with Offload(prestart_workers=True, process_workers=1):\n"
        "        pass\n\n"
        "anyio.run(main)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "WorkerCrashed: could not start the process lane's workers" in done.stderr
    assert "under `if __name__ == '__main__':`" in done.stderr


async def test_worker_logs_of_other_to_process_calls_are_not_collected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = anyio.CapacityLimiter(1)
    async with Offload(process_workers=1) as offload:
        await offload.submit(jobs.write_in_process, str(tmp_path / "a"), "one")
        await offload.join()
        # The same (only) worker, called directly: its log records are not ours.
        await anyio.to_process.run_sync(jobs.log_noise, 50, limiter=limiter)
        await offload.submit(jobs.write_in_process, str(tmp_path / "a"), "two")
        await offload.join()
    messages = [r.getMessage() for r in caplog.records if r.name == "tests.jobs"]
    assert messages == ["writing one from the worker", "writing two from the worker"]


# -- workers die with the web process (issue 15, finding 6) -------------------------------

BOUNDS_APP = "tests.apps.bounds_app:app"


def _wait_for_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path} not written within {timeout} s"
        time.sleep(0.05)
    return path.read_text()


@pytest.mark.server
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_workers_die_with_a_killed_server(start_server: StartServer, tmp_path: Path) -> None:
    # Was: after kill -9 of uvicorn, the worker ran on and wrote its file ~2 s later.
    server = start_server(BOUNDS_APP)
    out, pid_file = tmp_path / "out.txt", tmp_path / "worker.pid"
    with server.client() as client:
        client.post(
            "/sleep-then-write",
            params={"seconds": 3, "path": str(out), "pid_file": str(pid_file)},
        )
    worker = int(_wait_for_file(pid_file))
    assert _alive(worker)
    server.kill()
    deadline = time.monotonic() + 3
    while _alive(worker):
        assert time.monotonic() < deadline, "the worker outlived its server"
        time.sleep(0.05)
    time.sleep(4)  # past the task's end: it must never write
    assert not out.exists()


@pytest.mark.server
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_timeout_kills_children_in_a_session_of_their_own(
    start_server: StartServer, tmp_path: Path
) -> None:
    # Was: TaskTimeout said the processes it started were killed; this one lived on.
    server = start_server(BOUNDS_APP)
    pid_file = tmp_path / "child.pid"
    with server.client() as client:
        task_id = client.post(
            "/child-in-new-session", params={"pid_file": str(pid_file), "timeout": 3}
        ).json()["id"]
    child = int(_wait_for_file(pid_file))
    try:
        body = server.wait_for_state(task_id, {"failed"})
        assert "TaskTimeout" in str(body["error"])
        assert "the processes it started were killed" in str(body["error"])
        deadline = time.monotonic() + 3
        while _alive(child):
            assert time.monotonic() < deadline, "the task's child outlived the timeout"
            time.sleep(0.05)
    finally:
        if _alive(child):
            os.kill(child, 9)


_ORPHAN = """
import os, subprocess, sys, time
# The middle process: starts a "worker" that guards itself against this process's death
# with the parent-pid watchdog only (as on macOS, where PR_SET_PDEATHSIG is missing: the
# worker reads `sys.platform` when it arms its guard), then dies.
code = '''
import os, sys, time
from fastapi_offload.lanes.process import worker as _process
_process.PARENT_POLL = 0.05
sys.platform = "darwin"
_process.noop("normal", int(sys.argv[1]))
sys.platform = "linux"
print(os.getpid(), flush=True)
time.sleep(60)
'''
child = subprocess.Popen(
    [sys.executable, "-c", code, str(os.getpid())], stdout=subprocess.PIPE, text=True
)
print(child.stdout.readline().strip(), flush=True)
os._exit(0)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_parent_watchdog_ends_an_orphaned_worker(tmp_path: Path) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(textwrap.dedent(_ORPHAN))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    worker = int(done.stdout.strip())
    deadline = time.monotonic() + 5
    while _alive(worker):
        if time.monotonic() > deadline:
            os.kill(worker, 9)
            raise AssertionError("the worker outlived its parent")
        time.sleep(0.05)
