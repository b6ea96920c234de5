"""Contract: what the metrics router (`web/metrics/files.py`) uses of prometheus-client
that is not public API.

- `prometheus_client.values.ValueClass` is `values.MutexValue` unless
  prometheus-client chose multiprocess mode when it was imported: `new_writer()` reads
  the mode there, since a metric made in multiprocess mode writes to files whatever
  os.environ says later.
- In multiprocess mode, a `livesum` gauge of process `pid` is the file
  `gauge_livesum_<pid>.db`: `_forget_dead_workers` finds dead workers' gauges by that
  name and calls `mark_process_dead` on their pid.

Each mode runs in a fresh interpreter (the mode is fixed at import). A failure here
means a prometheus-client release changed one of them: adapt `web/metrics/files.py`,
then the verified versions in pyproject.toml (`prometheus-client<...`) and
docs/quickstart.md (Install).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

PROMETHEUS_CLIENT = version("prometheus-client")
ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, os
from prometheus_client import values
from fastapi_offload._config import OffloadConfig
from fastapi_offload._record import TaskRecord
from fastapi_offload.core.runtime import Runtime
from fastapi_offload.web.metrics.files import new_writer
writer = new_writer()
if writer is not None:
    writer.count("admitted", ("thread",), 1)
    # One task running on the thread lane: the writer's gauges have something to write.
    runtime = Runtime(OffloadConfig(), None)
    record = TaskRecord(
        id="t1", name="job", lane="thread", func=None, args=(), kwargs={},
        timeout=None, retries=0, retry_delay=0.0,
    )
    runtime.ledger.admit(record)
    runtime.ledger.started(record)
    writer.state(runtime, ("thread",), False)
print(json.dumps({
    "mutex": values.ValueClass is values.MutexValue,
    "writer": writer is not None,
    "pid": os.getpid(),
}))
"""


def changed(api: str) -> str:
    return (
        f"prometheus-client {PROMETHEUS_CLIENT} changed {api}, which is not public API; "
        "fastapi-offload's metrics (web/metrics/files.py) rely on it. Adapt that module "
        "to this version, or keep `prometheus-client` below it in pyproject.toml until it "
        "is, and update the verified versions in docs/quickstart.md (Install)."
    )


def _probe(directory: Path | None) -> dict[str, object]:
    env = {key: value for key, value in os.environ.items() if "multiproc" not in key.lower()}
    env["PYTHONPATH"] = str(ROOT / "src")
    if directory is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_one_process_mode_is_told_by_value_class() -> None:
    found = _probe(None)
    assert found["mutex"] is True, changed("values.ValueClass / values.MutexValue")
    assert found["writer"] is False


def test_multiprocess_mode_is_told_by_value_class_and_writes_the_files_we_read(
    tmp_path: Path,
) -> None:
    found = _probe(tmp_path)
    assert found["mutex"] is False, changed("values.ValueClass in multiprocess mode")
    assert found["writer"] is True
    names = sorted(path.name for path in tmp_path.iterdir())
    pid = found["pid"]
    assert f"counter_{pid}.db" in names, changed(f"the multiprocess file names ({names})")
    assert f"gauge_livesum_{pid}.db" in names, changed(
        f"the file name of a livesum gauge ({names}), which _forget_dead_workers globs"
    )
