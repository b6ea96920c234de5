"""`RedisLink`: the Redis connection of `RedisStore` and of its parts (`stores.redis_keys`,
`stores.redis_ticks`, `stores.redis_peers`): opening it (the URL's options, the key
layout's version), the Lua scripts loaded in it, and the calls that run them, loading them
again when Redis lost them (it restarted, or SCRIPT FLUSH)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.exceptions import NoScriptError
from redis.retry import Retry

from .._errors import ConfigError

__all__ = ["VERSION", "Decoder", "RedisLink", "masked"]

VERSION = 1  # the key layout's (`stores.redis`)
T = TypeVar("T")


class Decoder(Protocol):
    """The store's `_decoded`: `decode()`, or None with a warning naming the store when
    what it reads is not what this package writes."""

    def __call__(self, what: str, decode: Callable[[], T]) -> T | None: ...


class RedisLink:
    """One Redis client (None until `connect`, and after `close`) with the scripts of
    `scripts` (name -> Lua) loaded in it. `closed()` is the error of a call made while it
    is not connected."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout: float,
        scripts: Mapping[str, str],
        closed: Callable[[], Exception],
    ) -> None:
        self.url, self.prefix, self.timeout = url, prefix, timeout
        self.shown = masked(url)  # what messages and logs name: never the password
        self.client: redis.Redis | None = None
        self._scripts, self._closed = scripts, closed
        self._shas: dict[str, str] = {}

    def connect(self, count: Callable[[redis.Redis], int]) -> int:
        """Connect, check the layout and load the scripts, in a thread; `count(client)`, the
        store's rows. `ConfigError` naming `store` if Redis cannot be used."""
        try:  # the store timeout on every socket operation: a frozen Redis is a 503 soon
            client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # One retry on a broken connection (Redis restarted: a pooled one is stale),
                # none on a timeout, which would only double the wait on a frozen Redis.
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        except ValueError as exc:
            raise self.unusable(f"it is not a usable Redis URL ({exc})") from exc
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise self.unusable(
                "decode_responses is set in the URL; the store reads raw bytes: remove it"
            )
        try:
            client.ping()
            meta = f"{self.prefix}:meta"
            client.hsetnx(meta, "version", VERSION)  # the first process to open sets it
            found = client.hget(meta, "version")
            version = int(found) if found is not None and found.isdigit() else -1
            if version > VERSION or version < 0:
                raise self.unusable(
                    f"{meta} holds key layout version {found!r}, not one this fastapi-offload "
                    f"reads (up to {VERSION}): upgrade fastapi-offload in every process that "
                    "shares it, or use another prefix or database"
                )
            self._load(client)
            rows = count(client)
        except (redis.RedisError, OSError) as exc:
            client.close()
            raise self.unusable(
                f"it cannot be reached or used ({type(exc).__name__}: {exc}); check the host, "
                "port, database and password, and that Redis is running"
            ) from exc
        except BaseException:
            client.close()
            raise
        self.client = client
        return rows

    def close(self) -> None:
        if (client := self.client) is not None:
            self.client = None
            client.close()

    def pipeline(self, build: Callable[[Pipeline], object]) -> list[Any]:
        """The answers of the commands `build` queues in a pipeline (not a transaction)."""
        if (client := self.client) is None:
            raise self._closed()
        for attempt in (1, 2):
            pipe = client.pipeline(transaction=False)
            build(pipe)
            try:
                return pipe.execute()
            except NoScriptError:  # Redis restarted, or SCRIPT FLUSH: load them again
                if attempt == 2:
                    raise
                self._load(client)
        raise AssertionError("unreachable")

    def script(self, pipe: Pipeline, name: str, keys: list[str], *args: Any) -> None:
        """Queue script `name` in `pipe`; its ARGV start with the prefix, then `args`."""
        pipe.evalsha(self._shas[name], len(keys), *keys, self.prefix, *args)

    def call(self, name: str, *args: Any) -> Any:
        """Run script `name` (no keys; ARGV as `script`'s) at once: one round trip."""
        if (client := self.client) is None:
            raise self._closed()
        try:
            return client.evalsha(self._shas[name], 0, self.prefix, *args)
        except NoScriptError:  # Redis restarted, or SCRIPT FLUSH: load them again
            self._load(client)
            return client.evalsha(self._shas[name], 0, self.prefix, *args)

    def unusable(self, what: object) -> ConfigError:
        return ConfigError(f"store (OFFLOAD_STORE) {self.shown}: {what}")

    def _load(self, client: redis.Redis) -> None:
        self._shas = {name: str(client.script_load(text)) for name, text in self._scripts.items()}


def masked(url: str) -> str:
    """`url` with its password (if any) replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, host = parts.username or "", parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
