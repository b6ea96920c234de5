from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_offload import Offload, OffloadTasks, QueueFull, cpu_bound, io_bound, task

offload = Offload(
    timeout=300,  # seconds: the default timeout of every task
    max_pending=100,  # per lane: tasks accepted but not started; then 503
    shutdown_timeout=20,  # seconds the shutdown waits for running and pending tasks
)
app = FastAPI(lifespan=offload.lifespan)


@task(timeout=30, retries=3, retry_delay=5)  # thread lane: 4 attempts at most, 5 s apart
def charge_card(order_id: int) -> None:
    time.sleep(0.01)  # stands in for a payment API call


@cpu_bound(timeout=120)  # process lane: past 120 s its worker process is killed
def render_receipt(order_id: int) -> None:
    sum(i * i for i in range(100_000))  # stands in for rendering a PDF


@io_bound
def send_receipt(order_id: int) -> None:
    time.sleep(0.01)  # stands in for smtplib


@app.exception_handler(QueueFull)  # optional: QueueFull is already a 503 with Retry-After: 1
async def busy(request: Request, exc: QueueFull) -> JSONResponse:
    body = {"error": "too many orders being processed, retry in 10 seconds"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "10"})


@app.post("/orders/{order_id}", status_code=202)
async def place_order(order_id: int, tasks: OffloadTasks) -> dict[str, str]:
    charge = tasks.add_task(charge_card, order_id)
    tasks.add_task(render_receipt, order_id)
    # Per call, for this call only: no retries for the receipt e-mail.
    tasks.options(retries=0, timeout=10).add_task(send_receipt, order_id)
    return {"task_id": charge.id}
