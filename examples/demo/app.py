"""The demo app: one CPU-heavy job, run in the background in the way `DEMO_MODE` names.

- `background-async`: `BackgroundTasks` with an `async def` task (runs on the event loop)
- `background-def`:   `BackgroundTasks` with a `def` task (anyio's shared thread pool)
- `offload-thread`:   `OffloadTasks`, thread lane (threads of its own)
- `offload-process`:  `OffloadTasks`, process lane (worker processes, the default for
                      a `@cpu_bound` function)

Run one by hand with `DEMO_MODE=offload-process uvicorn examples.demo.app:app`, then
`curl -X POST 'localhost:8000/jobs?iterations=10000000'` and `curl localhost:8000/tasks/<id>`.
"""

from __future__ import annotations

import os
import threading

from fastapi import BackgroundTasks, FastAPI

from fastapi_offload import Offload, OffloadTasks, TaskState

from .jobs import crunch

MODES = ("background-async", "background-def", "offload-thread", "offload-process")
MODE = os.environ.get("DEMO_MODE", "offload-process")
if MODE not in MODES:
    raise RuntimeError(f"DEMO_MODE={MODE!r}; choose one of {', '.join(MODES)}")

# Two worker processes (this machine's cores), started with the app so that the first
# job does not wait for Python to start and import.
offload = Offload(process_workers=2, prestart_workers=MODE == "offload-process")
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())  # GET /tasks/{id}


class Progress:
    """How many jobs have finished, so the demo knows when to stop measuring."""

    def __init__(self) -> None:
        self.finished = 0  # counted by the BackgroundTasks modes' jobs themselves
        self.lock = threading.Lock()  # background-def finishes in several threads
        self.task_ids: list[str] = []  # the OffloadTasks modes ask the status store

    def job_finished(self) -> None:
        with self.lock:
            self.finished += 1


progress = Progress()


async def crunch_on_the_loop(iterations: int) -> None:
    # An `async def` that never awaits: the event loop can do nothing else meanwhile.
    crunch(iterations)
    progress.job_finished()


def crunch_in_a_thread(iterations: int) -> None:
    crunch(iterations)
    progress.job_finished()


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/jobs", status_code=202)
async def submit_job(
    iterations: int, background: BackgroundTasks, tasks: OffloadTasks
) -> dict[str, str]:
    if MODE == "background-async":
        background.add_task(crunch_on_the_loop, iterations)
        return {"mode": MODE}
    if MODE == "background-def":
        background.add_task(crunch_in_a_thread, iterations)
        return {"mode": MODE}
    if MODE == "offload-thread":
        handle = tasks.options(lane="thread").add_task(crunch, iterations)
    else:
        handle = tasks.add_task(crunch, iterations)  # @cpu_bound: the process lane
    progress.task_ids.append(handle.id)
    return {"mode": MODE, "id": handle.id}


@app.get("/done")
async def done() -> dict[str, int | None]:
    """Jobs finished so far (the harness polls this until all are done)."""
    finished, failed = progress.finished, 0
    for task_id in progress.task_ids:
        state = (await offload.status(task_id)).state
        finished += state is TaskState.SUCCEEDED
        failed += state in (TaskState.FAILED, TaskState.CANCELLED)
    return {"done": finished, "failed": failed, "wall": None}
