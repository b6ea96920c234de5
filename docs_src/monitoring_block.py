from __future__ import annotations

import time

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)


def load_prices() -> dict[str, float]:
    time.sleep(0.3)  # a blocking call: a sync HTTP client, a file read, a big json.loads
    return {"EUR": 1.0}


async def refresh_prices() -> None:
    load_prices()  # the mistake: blocking code inside `async def` holds the event loop


@app.post("/prices/refresh", status_code=202)
async def refresh(tasks: OffloadTasks) -> dict[str, str]:
    return {"task_id": tasks.add_task(refresh_prices).id}
