"""docs/dependencies.md: the SQLAlchemy example, in-process and under a real uvicorn."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from ..conftest import StartServer


def load(monkeypatch: pytest.MonkeyPatch, database: Path) -> ModuleType:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    sys.modules.pop("docs_src.dependencies_app", None)
    return importlib.import_module("docs_src.dependencies_app")


def test_the_task_opens_its_own_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load(monkeypatch, tmp_path / "shop.db")
    with TestClient(example.app) as client:
        created = client.post("/orders").json()
        client.portal.call(example.offload.join)  # type: ignore[union-attr]  # inside `with`
        assert client.get(f"/tasks/{created['task']}").json()["state"] == "succeeded"
        assert client.get(f"/orders/{created['order']}").json()["status"] == "receipt sent"


def test_dependency_overrides_give_the_task_the_test_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load(monkeypatch, tmp_path / "shop.db")
    test_engine = create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    example.Base.metadata.create_all(test_engine)
    used: list[str] = []

    def test_db() -> Iterator[Session]:
        with sessionmaker(test_engine)() as db:
            used.append("test db")
            yield db

    example.app.dependency_overrides[example.get_db] = test_db
    with TestClient(example.app) as client:
        created = client.post("/orders").json()
        client.portal.call(example.offload.join)  # type: ignore[union-attr]  # inside `with`
        assert client.get(f"/orders/{created['order']}").json()["status"] == "receipt sent"
    assert used == ["test db"] * 3  # the request, the task, the read


@pytest.mark.server
def test_under_uvicorn(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(
        "tests.apps.dependencies_server:app", env={"DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    )
    with server.client() as client:
        created = client.post("/orders").json()
        server.wait_for_state(created["task"], {"succeeded"})
        assert client.get(f"/orders/{created['order']}").json()["status"] == "receipt sent"
