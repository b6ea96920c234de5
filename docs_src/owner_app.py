from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException

from fastapi_offload import Offload, OffloadTasks, io_bound

offload = Offload(keep_result=True)
app = FastAPI(lifespan=offload.lifespan)
TOKENS = {"token-of-ada": "ada", "token-of-bob": "bob"}  # stands in for your auth


def current_user_id(authorization: Annotated[str, Header()] = "") -> str:
    user = TOKENS.get(authorization.removeprefix("Bearer "))
    if user is None:
        raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
    return user


# Each user reads (and cancels) only the tasks they started; any other id is a 404.
app.include_router(offload.status_router(cancel=True, owner=Depends(current_user_id)))


@io_bound
def build_report(month: str) -> dict[str, str]:
    return {"month": month, "url": f"/reports/{month}.pdf"}


@app.post("/reports/{month}", status_code=202)
async def start_report(
    month: str, tasks: OffloadTasks, user: Annotated[str, Depends(current_user_id)]
) -> dict[str, str]:
    handle = tasks.options(owner=user).add_task(build_report, month)  # recorded with the task
    return {"task_id": handle.id}
