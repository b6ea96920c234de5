from __future__ import annotations

from fastapi import BackgroundTasks, FastAPI

app = FastAPI()
OUTBOX: list[str] = []  # stands in for your mail server


def send_welcome_email(address: str) -> None:
    OUTBOX.append(address)


@app.post("/signups", status_code=202)
async def sign_up(email: str, tasks: BackgroundTasks) -> dict[str, str]:
    tasks.add_task(send_welcome_email, email)
    return {"email": email}
