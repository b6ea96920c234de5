from __future__ import annotations

import os
import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fastapi_offload import Offload, OffloadTasks

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)


def scraper_only(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(HTTPBearer())],
) -> None:
    # Prometheus sends `Authorization: Bearer <token>` (its scrape config says so).
    token = os.environ.get("METRICS_TOKEN", "")
    if not token or not secrets.compare_digest(credentials.credentials, token):
        raise HTTPException(status_code=401, detail="wrong metrics token")


app.include_router(offload.metrics_router(dependencies=[Depends(scraper_only)]))


def send_receipt(order_id: int) -> None: ...  # a `def`: the thread lane


@app.post("/orders/{order_id}", status_code=202)
async def place_order(order_id: int, tasks: OffloadTasks) -> dict[str, str]:
    return {"task_id": tasks.add_task(send_receipt, order_id).id}


@app.get("/health")  # for the load balancer; not protected, and not the metrics
async def health() -> dict[str, bool]:
    return {"ok": True}
