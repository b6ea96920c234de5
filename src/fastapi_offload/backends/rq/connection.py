"""Which Redis, and which queues, a worker class built by `rq_worker_class` listens on.

`rq worker` connects to `--url`, else to the settings of `--config`, else to RQ's own
`REDIS_*` variables, else to localhost:6379/0; it never reads `OFFLOAD_REDIS_URL`, where
the web process sends tasks. Started without `--url`, a worker would wait on db 0 while
the tasks went to another db, and every status would stay `pending` without a word. So
when `rq worker` was told no Redis, the worker connects to `OFFLOAD_REDIS_URL` (and, told
no queue, listens on `OFFLOAD_RQ_QUEUE`); when it was told another Redis than an
`OFFLOAD_REDIS_URL` that is set, it says so at WARNING.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import click
from redis import Redis

from ..._errors import ConfigError
from ..._remote_settings import safe_url

__all__ = ["rq_command", "worker_queues", "worker_redis"]

# What RQ's `get_redis_from_config(os.environ)` reads when there is no --url or --config.
_RQ_VARIABLES = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD")


def rq_command() -> Mapping[str, Any] | None:
    """The options of the running `rq worker` command; `None` outside RQ's command line
    (a worker built in code, whose connection was chosen by whoever built it)."""
    context = click.get_current_context(silent=True)
    if context is None or not {"url", "config", "worker_class"} <= context.params.keys():
        return None
    return context.params


def worker_redis(
    given: Any, redis_url: str, command: Mapping[str, Any] | None
) -> tuple[Any, tuple[int, str] | None]:
    """The connection the worker uses, and what to log about it (a level and a message)."""
    offload_set = bool(os.environ.get("OFFLOAD_REDIS_URL", "").strip())
    told = None if command is None else _told(command)
    if command is not None and told is None:
        # `type(given)`: keeps `rq worker --connection-class`.
        kind = type(given) if isinstance(given, Redis) else Redis
        origin = "OFFLOAD_REDIS_URL" if offload_set else "OFFLOAD_REDIS_URL's default"
        return _connect(kind, redis_url), (
            logging.INFO,
            f"rq worker was given no --url: connected to {safe_url(redis_url)} ({origin}), "
            "where the web process sends its tasks",
        )
    if not offload_set or not isinstance(given, Redis):
        return given, None
    if _target(given) == _target(_connect(Redis, redis_url)):
        return given, None
    fix = f"Leave out {told}, or make the two the same" if told else "Make the two the same"
    return given, (
        logging.WARNING,
        f"this worker listens on {_describe(given)} (from {told or 'its connection'}), but "
        f"OFFLOAD_REDIS_URL is {safe_url(redis_url)}: a web process reading "
        f"OFFLOAD_REDIS_URL sends its tasks there, and they will stay pending. {fix}.",
    )


def worker_queues(queues: Any, command: Mapping[str, Any] | None, default: str) -> list[str]:
    """The names of the queues to listen on: those given, or `default` (`OFFLOAD_RQ_QUEUE`)
    when `rq worker` was given none (RQ would listen on `default`).

    Names, not RQ's `Queue` objects: the worker builds them on its own connection, job
    class and serializer, which here may all differ from those of the command line.
    """
    if command is not None and not command.get("queues") and not command.get("config"):
        return [default]
    items = [queues] if isinstance(queues, str) or hasattr(queues, "name") else list(queues)
    return [item if isinstance(item, str) else str(item.name) for item in items]


def _connect(kind: type[Redis], url: str) -> Redis:
    try:
        return kind.from_url(url)
    except ValueError as exc:
        raise ConfigError(
            f"OFFLOAD_REDIS_URL={safe_url(url)!r} is not a Redis URL ({exc}); write e.g. "
            "redis://127.0.0.1:6379/0"
        ) from None


def _told(command: Mapping[str, Any]) -> str | None:
    if command.get("url"):
        return "--url or RQ_REDIS_URL"
    if command.get("config"):
        return "--config or RQ_CONFIG"
    return next((name for name in _RQ_VARIABLES if os.environ.get(name)), None)


def _target(connection: Redis) -> tuple[object, ...]:
    kwargs = connection.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return ("unix", kwargs["path"], kwargs.get("db", 0))
    host = kwargs.get("host", "localhost")
    host = "127.0.0.1" if host == "localhost" else host
    return (host, int(kwargs.get("port", 6379)), int(kwargs.get("db", 0)))


def _describe(connection: Redis) -> str:
    target = _target(connection)
    if target[0] == "unix":
        return f"unix://{target[1]}?db={target[2]}"
    return f"redis://{target[0]}:{target[1]}/{target[2]}"
