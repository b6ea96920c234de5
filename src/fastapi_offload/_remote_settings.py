"""Settings shared by the remote backends and their workers, read from `OFFLOAD_*` variables.

The web process and the worker read the same variables, so one environment file
configures both sides. The variables, with their defaults:

- `OFFLOAD_REDIS_URL` (`redis://127.0.0.1:6379/0`): RQ's Redis, and Celery's broker
  unless `OFFLOAD_CELERY_BROKER_URL` is set.
- `OFFLOAD_CELERY_BROKER_URL` (`OFFLOAD_REDIS_URL`): the Celery broker.
- `OFFLOAD_CELERY_RESULT_BACKEND` (the broker URL when it is Redis): Celery's result
  store; `none` disables it, and status then comes from the web process's own record.
  With another broker (RabbitMQ) it must be set: the Celery backend and worker app
  refuse to start without one (see `_celery_urls.result_store`).
- `OFFLOAD_CELERY_QUEUE` (`celery`): the queue tasks are sent to and the worker consumes.
- `OFFLOAD_RQ_QUEUE` (`default`): the RQ queue tasks are sent to.
- `OFFLOAD_SERIALIZER` (`json`): `json`, or `pickle`, a trust decision: with pickle,
  anyone who can write to the broker can run code on the workers.
- `OFFLOAD_BROKER_TIMEOUT` (`3`): seconds to connect to, or hear back from, the broker
  before a submit fails with `BackendUnavailable` (503).
- `OFFLOAD_RESULT_TTL` (`86400`): seconds task states and results are kept.
- `OFFLOAD_RESULT_MAX_BYTES` (`1048576`): the largest return value kept, in bytes of
  JSON (the same variable as the in-process lanes'). A worker stores a larger one as
  nothing, and the status says why.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from types import EllipsisType
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ._errors import BackendUnavailable, ConfigError

__all__ = [
    "CANCELLED_BY_REQUEST",
    "DEFAULT_RESULT_MAX_BYTES",
    "RemoteSettings",
    "backend_unavailable",
    "celery_result_choice",
    "check_max_bytes",
    "check_serializer",
    "check_timeout",
    "named_variable",
    "safe_url",
    "to_number",
    "to_progress",
    "to_timestamp",
]

# How a call's arguments travel to a remote worker (`backends._payload` checks them).
Serializer = Literal["json", "pickle"]

logger = logging.getLogger("fastapi_offload.backends")

#: `TaskInfo.error` of a task stopped by `cancel`, in the in-process lanes' words.
CANCELLED_BY_REQUEST = "cancelled by request"

_DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
DEFAULT_RESULT_MAX_BYTES = 1_048_576  # OffloadConfig.result_max_bytes' default too
_SERIALIZERS = ("json", "pickle")


@dataclass(frozen=True)
class RemoteSettings:
    """The `OFFLOAD_*` settings of the remote backends, parsed and validated once."""

    redis_url: str = _DEFAULT_REDIS
    celery_broker_url: str = _DEFAULT_REDIS
    celery_result_backend: str | None = _DEFAULT_REDIS
    celery_queue: str = "celery"
    rq_queue: str = "default"
    serializer: Serializer = "json"
    broker_timeout: float = 3.0
    result_ttl: int = 86400
    result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RemoteSettings:
        """Read the variables listed in this module's docstring; raises `ConfigError`."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            raw = env.get(name, "").strip()
            return raw or None

        redis_url = get("OFFLOAD_REDIS_URL") or _DEFAULT_REDIS
        broker = get("OFFLOAD_CELERY_BROKER_URL") or redis_url
        results = celery_result_choice(env)
        if results is ...:
            # Unset with a broker that is not Redis: None here, and the Celery backend
            # and worker app refuse to start (they see the variable unset, not `none`).
            results = broker if broker.startswith(("redis://", "rediss://")) else None
        return cls(
            redis_url=redis_url,
            celery_broker_url=broker,
            celery_result_backend=results,
            celery_queue=get("OFFLOAD_CELERY_QUEUE") or "celery",
            rq_queue=get("OFFLOAD_RQ_QUEUE") or "default",
            serializer=check_serializer(get("OFFLOAD_SERIALIZER") or "json", "OFFLOAD_SERIALIZER"),
            broker_timeout=_seconds(get("OFFLOAD_BROKER_TIMEOUT"), "OFFLOAD_BROKER_TIMEOUT", 3.0),
            result_ttl=math.ceil(
                _seconds(get("OFFLOAD_RESULT_TTL"), "OFFLOAD_RESULT_TTL", 86400.0)
            ),
            result_max_bytes=_bytes(get("OFFLOAD_RESULT_MAX_BYTES"), "OFFLOAD_RESULT_MAX_BYTES"),
        )


def celery_result_choice(environ: Mapping[str, str]) -> str | EllipsisType | None:
    """What `OFFLOAD_CELERY_RESULT_BACKEND` says: a URL, `None` for `none` (no store, on
    purpose), or `...` when it is unset (the default applies)."""
    raw = environ.get("OFFLOAD_CELERY_RESULT_BACKEND", "").strip()
    if not raw:
        return ...
    return None if raw.lower() in ("none", "disabled", "off") else raw


def named_variable(
    exc: ConfigError, environ: Mapping[str, str], variables: Mapping[str, str]
) -> ConfigError:
    """`exc`, raised by a backend's constructor, led by the variable its bad value came from.

    `variables` maps constructor keywords to the `OFFLOAD_*` variable each was read from;
    when the message is about one of them (`keyword=...`) and that variable is set, the
    message starts `VARIABLE='value' (the keyword option):` as `OffloadConfig`'s do, since
    the variable is what to fix. A URL's password is masked.
    """
    text = str(exc)
    for keyword, variable in variables.items():
        raw = environ.get(variable, "").strip()
        if raw and text.startswith(f"{keyword}="):
            return ConfigError(f"{variable}={safe_url(raw)!r} (the {keyword} option): {text}")
    return exc


def check_serializer(value: object, where: str = "serializer") -> Serializer:
    """`value` as a `Serializer`; raises `ConfigError` naming `where` otherwise."""
    if value == "json":
        return "json"
    if value == "pickle":
        return "pickle"
    raise ConfigError(
        f"{where}={value!r} is not accepted; use 'json' (the default) or 'pickle' "
        "(only when the workers trust everyone who can write to the broker)"
    )


def check_timeout(value: object, where: str) -> float:
    """`value` as a positive number of seconds; raises `ConfigError` naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{where}={value!r} must be a number of seconds above 0")
    return float(value)


def _seconds(raw: str | None, env: str, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a number of seconds") from None
    return check_timeout(value, env)


def check_max_bytes(value: object, where: str) -> int:
    """`value` as a positive whole number of bytes; raises `ConfigError` naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}={value!r} must be a whole number of bytes above 0")
    return value


def _bytes(raw: str | None, env: str) -> int:
    if raw is None:
        return DEFAULT_RESULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a whole number of bytes") from None
    return check_max_bytes(value, env)


def safe_url(url: str) -> str:
    """`url` with any password replaced by `***`, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def backend_unavailable(
    backend: str, url: str, exc: BaseException, what: str
) -> BackendUnavailable:
    """A `BackendUnavailable` that says which broker failed, how, and what was not done."""
    message = (
        f"the {backend} broker at {safe_url(url)} could not be reached ({exc}); "
        f"{what}. Check that the broker runs and that the OFFLOAD_* URL points at it."
    )
    logger.error(message)
    return BackendUnavailable(message)


def to_timestamp(value: object) -> float | None:
    """A Unix timestamp from a datetime or ISO 8601 text (naive means UTC), else None."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    return None


def to_number(value: object) -> float | None:
    """`value` as a float if it is an int or a float (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def to_progress(fraction: object, message: object) -> tuple[float | None, str | None]:
    """A stored progress report as `TaskInfo` fields; `(None, None)` unless the fraction
    is a number from 0 to 1 (a record a task wrote itself may hold anything)."""
    value = to_number(fraction)
    if value is None or not 0.0 <= value <= 1.0:  # NaN fails both comparisons
        return None, None
    return value, message if isinstance(message, str) else None
