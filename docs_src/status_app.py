from __future__ import annotations

import time

from fastapi import FastAPI, HTTPException, Response

from fastapi_offload import Offload, OffloadTasks, TaskState, cpu_bound

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router(prefix="/jobs"))  # GET /jobs/{task_id}


@cpu_bound
def render_invoice(invoice_id: int) -> None:
    time.sleep(0.2)  # stands in for rendering a PDF


@app.post("/invoices/{invoice_id}/pdf", status_code=202)
async def render(invoice_id: int, tasks: OffloadTasks, response: Response) -> dict[str, str]:
    handle = tasks.add_task(render_invoice, invoice_id)
    response.headers["Location"] = f"/jobs/{handle.id}"
    return {"task_id": handle.id}


@app.get("/invoices/{invoice_id}/pdf/{task_id}")
async def pdf_status(invoice_id: int, task_id: str) -> dict[str, object]:
    info = await offload.status(task_id)  # a TaskInfo; state `unknown` for an id never seen
    if info.state is TaskState.UNKNOWN:
        raise HTTPException(404, f"no rendering task {task_id}")
    return {"invoice_id": invoice_id, "state": info.state.value, "done": info.state.finished}
