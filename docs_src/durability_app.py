from __future__ import annotations

import os

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks, task

# Every task is written to the SQLite file before its request's response: a 202 means
# the task is on disk. OFFLOAD_STORE=sqlite:///... does the same without code.
offload = Offload(store=os.environ.get("OFFLOAD_STORE", "sqlite:///./offload.db"))
app = FastAPI(lifespan=offload.lifespan)
app.include_router(offload.status_router())  # any worker process answers for any task


@task(requeue=True)  # safe to run twice: run again if its process dies
def rebuild_index(user_id: int) -> None: ...


def send_receipt(order_id: int) -> None: ...  # not idempotent: `interrupted` if it dies


@app.post("/orders/{order_id}", status_code=202)
async def place_order(order_id: int, tasks: OffloadTasks) -> dict[str, str]:
    receipt = tasks.add_task(send_receipt, order_id)
    index = tasks.add_task(rebuild_index, order_id)
    return {"receipt": receipt.id, "index": index.id}
