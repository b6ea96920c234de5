"""Idempotency keys under real servers: 20 clients POST one key at once to `uvicorn
--workers 2` on a SQLite file, and to two servers sharing a real Redis; exactly one task
runs, and every client is answered with its id."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from tests.backends.conftest import redis_base_url as redis_base_url  # the fixture
from tests.conftest import Server, StartServer
from tests.helpers import lines

APP = "tests.apps.durable_app:app"
pytestmark = pytest.mark.server
CLIENTS = 20


def post_at_once(servers: list[Server], key: str, out: Path) -> list[httpx.Response]:
    """`CLIENTS` POSTs of one key at once, each on a new connection, spread over `servers`."""

    def post(index: int) -> httpx.Response:
        url = servers[index % len(servers)].url
        with httpx.Client(base_url=url, timeout=20) as client:
            params = {"key": key, "path": str(out)}
            return client.post("/keyed", params=params, headers={"Connection": "close"})

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(post, range(CLIENTS)))


def check_one_run(servers: list[Server], key: str, out: Path) -> set[str]:
    """POST `key` from every client at once; one task runs, every client has its id.
    Returns the processes (pids) that answered."""
    answers = post_at_once(servers, key, out)
    assert [a.status_code for a in answers if a.status_code not in (200, 202)] == []
    bodies = [a.json() for a in answers]
    ids = {body["id"] for body in bodies}
    assert len(ids) == 1, ids
    assert sorted(a.status_code for a in answers) == [200] * (CLIENTS - 1) + [202]
    assert sorted(body["existing"] for body in bodies) == [False] + [True] * (CLIENTS - 1)
    servers[0].wait_for_state(ids.pop(), {"succeeded"})
    assert [line.split()[0] for line in lines(out)] == [key]  # exactly one run
    return {a.headers["x-worker-pid"] for a in answers}


def test_one_key_from_20_clients_over_2_workers_on_sqlite_runs_once(
    start_server: StartServer, tmp_path: Path
) -> None:
    env = {"OFFLOAD_STORE": f"sqlite:///{tmp_path / 'offload.db'}"}
    server = start_server(APP, env=env, args=("--workers", "2"))
    answered: set[str] = set()
    for round_ in range(4):  # until both workers took part (the kernel spreads connections)
        answered |= check_one_run([server], f"order-{round_}", tmp_path / f"runs-{round_}")
        if len(answered) == 2:
            break
    assert len(answered) == 2, "one worker took every connection"


@pytest.mark.redis
def test_one_key_from_20_clients_over_2_servers_sharing_redis_runs_once(
    start_server: StartServer, tmp_path: Path, redis_base_url: str
) -> None:
    url = f"{redis_base_url}/15"
    redis.Redis.from_url(url).flushdb()  # a database of these tests' own
    servers = [start_server(APP, env={"OFFLOAD_STORE": url}) for _ in range(2)]
    for round_ in range(2):
        answered = check_one_run(servers, f"order-{round_}", tmp_path / f"runs-{round_}")
        assert len(answered) == 2  # half the clients asked each server
