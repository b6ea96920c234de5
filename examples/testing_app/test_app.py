"""The app's tests: real lanes with `join()`, then the two test backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastapi_offload import Offload, TaskState
from fastapi_offload.testing import InlineBackend, RecordingBackend

from .conftest import running
from .jobs import render_avatar, send_welcome_email

pytestmark = pytest.mark.anyio

SIGNUP = {"user_id": 7, "name": "ada", "email": "ada@example.com"}


async def test_signup_sends_the_email_and_renders_the_avatar(data_dir: Path) -> None:
    offload = Offload()  # the real lanes: a thread for the e-mail, a process for the avatar
    async with running(offload) as client:
        response = await client.post("/signups", json=SIGNUP)
        assert response.status_code == 202
        await offload.join()  # wait until every task has finished
        avatar = await client.get(f"/tasks/{response.json()['avatar_task']}")
    assert avatar.json()["state"] == "succeeded"
    assert avatar.json()["lane"] == "process"
    assert (data_dir / "welcome-ada@example.com.eml").read_text().startswith("To: ada@")
    assert (data_dir / "avatar-7.pgm").read_bytes().startswith(b"P5 64 64 255\n")


async def test_signup_submits_both_tasks(recording_backend: RecordingBackend) -> None:
    # The recording backend runs nothing: it keeps each call for assertions.
    async with running(Offload(backend=recording_backend)) as client:
        response = await client.post("/signups", json=SIGNUP)
    assert response.status_code == 202
    assert recording_backend.names == [
        "examples.testing_app.jobs.send_welcome_email",
        "examples.testing_app.jobs.render_avatar",
    ]
    [call] = recording_backend.calls_to(render_avatar)
    assert call.args == (7, "A")


async def test_tasks_run_inline_before_the_response(
    inline_backend: InlineBackend, data_dir: Path
) -> None:
    # The inline backend runs each task during the request, with JSON arguments.
    offload = Offload(backend=inline_backend)
    async with running(offload) as client:
        response = await client.post("/signups", json=SIGNUP)
        info = await offload.status(response.json()["email_task"])
    assert info.state is TaskState.SUCCEEDED and info.lane == "inline"
    assert (data_dir / "welcome-ada@example.com.eml").exists()
    assert len(inline_backend.calls_to(send_welcome_email)) == 1


async def test_a_broker_that_is_down_means_503(recording_backend: RecordingBackend) -> None:
    recording_backend.available = False
    async with running(Offload(backend=recording_backend)) as client:
        response = await client.post("/signups", json=SIGNUP)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert recording_backend.calls == []
