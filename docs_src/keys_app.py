from __future__ import annotations

from fastapi import FastAPI, Response
from pydantic import AwareDatetime

from fastapi_offload import Offload, OffloadTasks, io_bound

# Keys and delayed tasks are kept in the store: a durable one holds them across
# processes, restarts and kill -9 (the memory store, in this process only).
offload = Offload(store="sqlite:///./offload.db")
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())


@io_bound  # declared where it is defined: a call kept until it is due may name it
def send_receipt(order_id: int) -> None:
    # e-mail the receipt: once, however often the client retries
    ...


@io_bound
def remind(cart_id: int) -> None:
    # "you left something in your cart"
    ...


@app.post("/orders/{order_id}/receipt", status_code=202)
async def receipt(order_id: int, tasks: OffloadTasks, response: Response) -> dict[str, str]:
    handle = tasks.options(key=f"receipt-{order_id}").add_task(send_receipt, order_id)
    if handle.existing:  # a retried POST: the same task, and no second e-mail
        response.status_code = 200
    return {"task_id": handle.id}


@app.post("/carts/{cart_id}/reminder", status_code=202)
async def reminder(cart_id: int, tasks: OffloadTasks) -> dict[str, str]:
    # In an hour; `scheduled` until then (GET /tasks/{id} shows its due_at).
    handle = tasks.options(delay=3600, key=f"reminder-{cart_id}").add_task(remind, cart_id)
    return {"task_id": handle.id}


@app.post("/orders/{order_id}/receipt/at", status_code=202)
async def receipt_at(order_id: int, at: AwareDatetime, tasks: OffloadTasks) -> dict[str, str]:
    # `at=` needs a time zone (?at=2026-12-24T18:00:00Z): AwareDatetime answers 422 without.
    return {"task_id": tasks.options(at=at).add_task(send_receipt, order_id).id}
