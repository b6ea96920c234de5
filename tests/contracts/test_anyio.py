"""Contract: what the process lane (`lanes/process/`) relies on in anyio's worker
processes (`anyio.to_process`), none of it public API.

- A worker reads its commands on fd 0 and writes its answers on fd 1, and writes the
  answer only after the function returned: the trampoline (`lanes/process/worker.py`,
  `_isolate` / `_restore`) points fds 0 and 1 at /dev/null during a task, so that a
  task or its child writing to fd 1 cannot corrupt the protocol, and puts them back
  before returning. fd 2 is a pipe nobody reads (pointed at /dev/null for good).
- A worker that fails while starting raises `BrokenWorkerProcess` whose text says
  "initialization": `lanes/process/lane.py` (`_why`) tells that apart from a crash.
- `anyio.to_process.WORKER_MAX_IDLE_TIME`: idle workers are killed after it; the lane's
  keep-warm ping (`ProcessLane.keep_warm`) must come more often.

Each check runs in a fresh interpreter: anyio's workers belong to an event loop, and a
worker that already ran a task of ours has its fds moved. A failure here means an anyio
release changed one of them: adapt `lanes/process/`, then the verified versions in
pyproject.toml (`anyio<...`) and docs/quickstart.md (Install).
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import anyio.to_process

from fastapi_offload.lanes.process.lane import ProcessLane

ANYIO = version("anyio")
ROOT = Path(__file__).resolve().parents[2]


def changed(api: str) -> str:
    return (
        f"anyio {ANYIO} changed {api}, which is not public API; fastapi-offload's process "
        "lane (lanes/process/) relies on it. Adapt the lane to this anyio, or keep `anyio` "
        "below this version in pyproject.toml until it is, and update the verified "
        "versions in docs/quickstart.md (Install)."
    )


def _run(script: str, tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "probe.py"
    path.write_text(script)
    done = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=60,  # a worker reading its commands from what a task wrote would hang
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


_PIPES = """
import json, os, stat
import anyio, anyio.to_process
from fastapi_offload.lanes.process import worker

def kinds():
    return [stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in (0, 1, 2)]

def noisy():
    os.write(1, b"RETURN 3\\nxyz")  # what anyio's reader would take for an answer
    return len(os.read(0, 10))  # /dev/null during the task: 0 bytes

async def main():
    fds = await anyio.to_process.run_sync(kinds)
    outcome = await anyio.to_process.run_sync(
        worker.run, noisy, (), {}, "normal", 30, "", -1, ("id", "noisy"), 1000
    )
    after = await anyio.to_process.run_sync(kinds)
    print(json.dumps({"fds": fds, "ok": outcome[0], "kept": outcome[5], "after": after}))

if __name__ == "__main__":
    anyio.run(main)
"""


def test_a_worker_speaks_on_fds_0_and_1_and_the_trampoline_keeps_them_clean(
    tmp_path: Path,
) -> None:
    found = _run(_PIPES, tmp_path)
    assert found["fds"] == [True, True, True], changed(
        "the worker's standard fds (0: commands, 1: answers, 2: an unread pipe)"
    )
    # The task's writes to fd 1 went to /dev/null and its read of fd 0 read nothing;
    # its result came back, and the worker answered again afterwards.
    assert found["ok"] is True and found["kept"] == ["0", None], changed(
        "when a worker reads fd 0 and writes fd 1 (after the function returned)"
    )
    assert found["after"] == [True, True, False], changed("the worker after a task of ours")


_FAILS_TO_START = """
import json
import anyio, anyio.to_process
from fastapi_offload.lanes.process.lane import _why

if __name__ == "__mp_main__":
    raise RuntimeError("unguarded module-level code")

async def main():
    try:
        await anyio.to_process.run_sync(int)
    except anyio.BrokenWorkerProcess as exc:
        print(json.dumps({"text": str(exc), "why": _why(exc)}))

if __name__ == "__main__":
    anyio.run(main)
"""


def test_a_worker_that_fails_to_start_says_initialization(tmp_path: Path) -> None:
    found = _run(_FAILS_TO_START, tmp_path)
    assert "initialization" in str(found["text"]), changed(
        f"BrokenWorkerProcess's text for a worker that fails to start ({found['text']!r})"
    )
    assert "failed while starting" in str(found["why"])


def test_idle_workers_live_longer_than_the_keep_warm_interval() -> None:
    idle = getattr(anyio.to_process, "WORKER_MAX_IDLE_TIME", None)
    assert isinstance(idle, int | float), changed("anyio.to_process.WORKER_MAX_IDLE_TIME")
    interval = inspect.signature(ProcessLane.keep_warm).parameters["interval"].default
    assert interval < idle, changed(f"WORKER_MAX_IDLE_TIME ({idle} s, keep-warm {interval} s)")
