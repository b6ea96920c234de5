"""The app under test, built by a factory so a test can hand it its own `Offload`.

uvicorn --factory examples.testing_app.app:create_app
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from fastapi_offload import Offload, OffloadTasks

from .jobs import render_avatar, send_welcome_email


class Signup(BaseModel):
    user_id: int
    name: str
    email: str


def create_app(offload: Offload | None = None) -> FastAPI:
    offload = offload or Offload()
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router())

    @app.post("/signups", status_code=202)
    async def sign_up(signup: Signup, tasks: OffloadTasks) -> dict[str, str]:
        email = tasks.add_task(send_welcome_email, signup.email)
        avatar = tasks.add_task(render_avatar, signup.user_id, signup.name[:1].upper())
        return {"email_task": email.id, "avatar_task": avatar.id}

    return app
