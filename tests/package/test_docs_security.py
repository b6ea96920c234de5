"""docs/security.md: its example runs as the page says."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest
import redis
from fastapi.testclient import TestClient

from fastapi_offload import TaskState
from tests.backends.conftest import redis_base_url as redis_base_url  # the fixture

pytestmark = pytest.mark.redis


def load(module: str) -> ModuleType:
    sys.modules.pop(module, None)
    return importlib.import_module(module)


def test_a_requeue_task_on_redis_is_saved_signed(
    redis_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{redis_base_url}/14"
    redis.Redis.from_url(url).flushdb()
    monkeypatch.setenv("OFFLOAD_STORE", url)
    monkeypatch.setenv("APP_OFFLOAD_KEY", "a secret shared by every process")
    example = load("docs_src.security_requeue")
    with TestClient(example.app) as client:
        response = client.post("/users/42/index")
        assert response.status_code == 202  # without the key: a ConfigError in the request
        client.portal.call(example.offload.join)  # type: ignore[union-attr]  # inside `with`
        info = client.portal.call(example.offload.status, response.json()["task"])  # type: ignore[union-attr]
    assert info.state is TaskState.SUCCEEDED


def test_without_the_key_the_example_does_not_start(
    redis_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFLOAD_STORE", f"{redis_base_url}/14")
    monkeypatch.delenv("APP_OFFLOAD_KEY", raising=False)
    with pytest.raises(KeyError, match="APP_OFFLOAD_KEY"):
        load("docs_src.security_requeue")
