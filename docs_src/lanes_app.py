from __future__ import annotations

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks

from .lanes_jobs import call_webhook, checksum, export_csv, notify, send_email

# `module.qualname` patterns (fnmatch: `*` also matches dots), first match wins.
offload = Offload(routes={"*.export_*": "process"})
app = FastAPI(lifespan=offload.lifespan)


@app.post("/reports/{report_id}", status_code=202)
async def create_report(report_id: int, tasks: OffloadTasks) -> list[str]:
    handles = [
        tasks.add_task(checksum, b"report %d" % report_id),  # @cpu_bound -> process
        tasks.add_task(send_email, "ops@example.com", "new report"),  # @io_bound -> thread
        tasks.add_task(call_webhook, "https://example.com/hook", "report"),  # @task -> thread
        tasks.add_task(export_csv, report_id),  # routing rule -> process
        tasks.add_task(notify, 42),  # async def -> loop
        # Per-call options win over everything; they never mix with the task's kwargs.
        tasks.options(lane="thread", timeout=5).add_task(checksum, b"small", rounds=10),
    ]
    return [handle.lane for handle in handles]
