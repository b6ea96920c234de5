"""A shared Redis store and a task that is run again after a crash: the key signs it."""

from __future__ import annotations

import os

from fastapi import FastAPI

from fastapi_offload import Offload, OffloadTasks, task

# The same secret in every process and host that shares the Redis (a secrets manager,
# or the deployment's environment); OFFLOAD_SECRET_KEY does the same without code.
offload = Offload(
    store=os.environ.get("OFFLOAD_STORE", "redis://127.0.0.1:6379/0"),
    secret_key=os.environ["APP_OFFLOAD_KEY"],
)
app = FastAPI(lifespan=offload.lifespan)


@task(requeue=True)  # declared here: the only kind of function a reclaimed row may name
def rebuild_index(user_id: int) -> None: ...


@app.post("/users/{user_id}/index", status_code=202)
async def reindex(user_id: int, tasks: OffloadTasks) -> dict[str, str]:
    # Saved as {"func": "...:rebuild_index", "args": [42], ...}, signed with the key.
    return {"task": tasks.add_task(rebuild_index, user_id).id}
