"""Error text (`_error_text.py`) is bounded (issue 15, finding 3), also against a real
uvicorn with a SQLite store: it is capped and its URL passwords are masked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import StartServer

pytestmark = pytest.mark.server

APP = "tests.apps.bounds_app:app"
LIMIT = 4096  # characters of kept error text (`_error_text.LIMIT`)


def _sqlite(tmp_path: Path) -> dict[str, str]:
    return {"OFFLOAD_STORE": f"sqlite:///{tmp_path / 'offload.db'}"}


def test_error_text_caps_and_masks() -> None:
    from fastapi_offload._error_text import error_text, mask, scrub_args

    text = error_text(ValueError("x" * 10_000_000))
    assert text.startswith("ValueError('xxx") and len(text) < LIMIT + 100
    assert text.endswith("… [truncated, 10.0 M characters in all]")
    assert error_text("postgres://app:S3cr3tPW@db/prod") == "postgres://app:***@db/prod"
    assert mask("redis://:pw@host:6379/0 and https://u:p@x/y") == (
        "redis://:***@host:6379/0 and https://u:***@x/y"
    )
    assert mask("http://host:8080/path") == "http://host:8080/path"  # no credentials
    # A password cut by the cap is masked too.
    cut = error_text("y" * (LIMIT - 20) + " postgres://app:S3cr3tPW@db/prod")
    assert "S3cr" not in cut and "postgres://app:***" in cut
    exc = RuntimeError("z" * 100_000, "postgres://a:b@c/d", 3)
    scrub_args(exc)
    assert len(exc.args[0]) < LIMIT + 100 and exc.args[1:] == ("postgres://a:***@c/d", 3)


@pytest.mark.parametrize("lane", ["thread", "process"])
def test_a_10_mb_error_is_kept_capped(start_server: StartServer, tmp_path: Path, lane: str) -> None:
    # Was: the whole 10 MB stored in SQLite and served by every GET.
    server = start_server(APP, env=_sqlite(tmp_path))
    with server.client() as client:
        params: dict[str, str | int] = {"size": 10_000_000, "lane": lane}
        task_id = client.post("/raise-big", params=params).json()["id"]
    body = server.wait_for_state(task_id, {"failed"})
    error = str(body["error"])
    assert error.startswith("ValueError('xxxx") and "[truncated, 10.0 M characters" in error
    with server.client() as client:
        assert len(client.get(f"/tasks/{task_id}").content) < 2 * LIMIT
    assert os.path.getsize(tmp_path / "offload.db") + _wal(tmp_path) < 2_000_000
    assert len(server.log()) < 200_000  # the log line is bounded too


def _wal(tmp_path: Path) -> int:
    wal = tmp_path / "offload.db-wal"
    return wal.stat().st_size if wal.exists() else 0


@pytest.mark.parametrize("lane", ["loop", "thread", "process"])
def test_url_passwords_are_masked(start_server: StartServer, tmp_path: Path, lane: str) -> None:
    server = start_server(APP, env=_sqlite(tmp_path))
    with server.client() as client:
        task_id = client.post("/raise-secret", params={"lane": lane}).json()["id"]
    body = server.wait_for_state(task_id, {"failed"})
    assert "postgres://app:***@db/prod" in str(body["error"])
    server.wait_for_log("postgres://app:***@db/prod")
    assert "S3cr3tPW" not in server.log()
    assert b"S3cr3tPW" not in (tmp_path / "offload.db").read_bytes()
    wal = tmp_path / "offload.db-wal"
    assert not wal.exists() or b"S3cr3tPW" not in wal.read_bytes()
