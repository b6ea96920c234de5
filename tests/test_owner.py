"""Closed by default (issue 15, finding 4): a task's owner, recorded at `add_task`, and the
status router's `owner=` check; the warning of a status router open to anyone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI, Header

from fastapi_offload import ConfigError, Offload, OffloadTasks
from fastapi_offload.testing import RecordingBackend

from .helpers import serve

pytestmark = pytest.mark.anyio


def whoami(x_user: str | None = Header(default=None)) -> str | None:
    return x_user  # None: nobody logged in


def answer(value: int) -> int:
    return value


def app_for(offload: Offload) -> FastAPI:
    app = FastAPI(lifespan=offload.lifespan)
    app.include_router(offload.status_router(owner=Depends(whoami), cancel=True))

    @app.post("/run")
    async def run(tasks: OffloadTasks, user: str | None = Depends(whoami)) -> dict[str, str]:
        chosen = tasks.options(owner=user) if user is not None else tasks
        return {"id": chosen.add_task(answer, 7).id}

    return app


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_only_the_owner_reads_waits_for_or_cancels_a_task(store: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.db'}" if store == "sqlite" else None
    offload = Offload(keep_result=True, store=url)
    async with serve(app_for(offload), offload) as client:
        ada, bob = {"x-user": "ada"}, {"x-user": "bob"}
        mine = (await client.post("/run", headers=ada)).json()["id"]
        nobodys = (await client.post("/run")).json()["id"]
        await offload.join()
        assert (await offload.status(mine)).owner == "ada"
        got = await client.get(f"/tasks/{mine}", headers=ada)
        refused = [
            await client.get(f"/tasks/{mine}", headers=bob),
            await client.get(f"/tasks/{mine}/events", headers=bob),
            await client.delete(f"/tasks/{mine}", headers=bob),
            await client.get(f"/tasks/{mine}"),  # nobody
            await client.get(f"/tasks/{nobodys}"),  # no owner recorded: nobody's
            await client.get(f"/tasks/{nobodys}", headers=ada),
        ]
        events = await client.get(f"/tasks/{mine}/events", headers=ada)
        again = await client.delete(f"/tasks/{mine}", headers=ada)  # ended: 409
    assert got.status_code == 200 and got.json()["result"] == 7
    assert [r.status_code for r in refused] == [404] * 6
    assert all(r.json()["state"] == "unknown" and r.json()["name"] == "" for r in refused)
    assert events.status_code == 200 and '"result":7' in events.text
    assert again.status_code == 409


async def test_an_owner_is_a_short_id() -> None:
    offload = Offload()
    with pytest.raises(ConfigError, match="owner= is 201 characters long, more than 200"):
        offload.options(owner="x" * 201)
    for bad in ("", True, 1.5, b"ada"):
        with pytest.raises(ConfigError, match="must be a non-empty string or a whole number"):
            offload.options(owner=bad)  # type: ignore[arg-type]  # the wrong types on purpose
    async with offload:
        handle = await offload.options(owner=42).submit(answer, 1)  # an int user id
        await offload.join()
        assert (await offload.status(handle.id)).owner == "42"


@pytest.mark.parametrize(
    ("options", "warned"),
    [
        ({"cancel": True}, "cancels any task"),
        ({}, None),  # results not kept: a status (state, error) only, behind the id
        ({"cancel": True, "public": True}, None),
        ({"cancel": True, "cancel_dependencies": [Depends(whoami)]}, None),
        ({"cancel": True, "owner": Depends(whoami)}, None),
        ({"cancel": True, "dependencies": [Depends(whoami)]}, None),
    ],
)
def test_a_status_router_open_to_anyone_is_warned_of(
    options: dict[str, object], warned: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        Offload().status_router(**options)  # type: ignore[arg-type]  # the options of one case
    found = [r.getMessage() for r in caplog.records if "status_router" in r.getMessage()]
    if warned is None:
        assert found == []
    else:
        [message] = found
        assert warned in message and "owner=Depends(current_user_id)" in message
        assert "public=True" in message


def test_kept_results_behind_a_bare_id_are_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "fastapi_offload"):
        Offload(keep_result=True).status_router(prefix="/jobs")
    [message] = [r.getMessage() for r in caplog.records]
    assert "status_router(prefix='/jobs')" in message and "reads every kept result" in message


async def test_a_remote_tasks_owner_is_the_one_recorded_here() -> None:
    # A backend knows no owner: the status it answers carries the one recorded here.
    backend = RecordingBackend()
    async with Offload(backend=backend) as offload:
        handle = await offload.options(owner="ada").submit(answer, 1)
        info = await offload.status(handle.id)
    assert info.lane == "recording" and info.owner == "ada"
