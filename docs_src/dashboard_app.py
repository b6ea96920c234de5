from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from fastapi_offload import Offload, OffloadTasks, report_progress

offload = Offload()
app = FastAPI(lifespan=offload.lifespan)
security = HTTPBasic(realm="tasks")


def operators_only(credentials: Annotated[HTTPBasicCredentials, Depends(security)]) -> None:
    # Bytes: compare_digest refuses non-ASCII str. Both compared, whatever the first says.
    user_ok = secrets.compare_digest(credentials.username.encode(), b"ops")
    password_ok = secrets.compare_digest(
        credentials.password.encode(),
        b"change me",  # read it from your settings
    )
    if not (user_ok and password_ok):
        raise HTTPException(401, "operators only", headers={"WWW-Authenticate": "Basic"})


# The page at /offload/, its data and its cancel button: all behind operators_only.
app.include_router(
    offload.dashboard_router(prefix="/offload", cancel=True, dependencies=[Depends(operators_only)])
)


def resize_album(album_id: int, photos: int) -> None:
    for done in range(1, photos + 1):
        time.sleep(0.1)  # stands in for resizing one photo
        report_progress(done / photos, f"{done} of {photos} photos")  # a bar on the page


@app.post("/albums/{album_id}/resize", status_code=202)
async def resize(album_id: int, tasks: OffloadTasks, photos: int = 10) -> dict[str, str]:
    return {"task_id": tasks.add_task(resize_album, album_id, photos).id}
