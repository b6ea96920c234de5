"""The values of options that need more than a type check: the secret key, the store
URL, and each option's `OFFLOAD_*` text parsed into its value."""

from __future__ import annotations

from typing import Any

from ._errors import ConfigError

__all__ = ["MIN_KEY", "check_secret_key", "parse_env", "parse_routes", "store_path"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

MIN_KEY = 16


def check_secret_key(key: object) -> None:
    """`secret_key`: unset, or text of `MIN_KEY` characters or more."""
    if key is None:
        return
    if not isinstance(key, str) or len(key) < MIN_KEY:
        shown = "a " + type(key).__name__ if not isinstance(key, str) else f"{len(key)} characters"
        raise ConfigError(
            f"secret_key (OFFLOAD_SECRET_KEY) must be a string of {MIN_KEY} characters or "
            f"more, got {shown}; make one with: python -c 'import secrets; "
            "print(secrets.token_hex(32))'"
        )


def store_path(url: str) -> str | None:
    """The file named by a `sqlite:///...` URL, `None` for `memory` and Redis URLs;
    `ConfigError` for anything else."""
    if not isinstance(url, str):
        raise ConfigError(f"store={url!r} must be a string: 'memory' or 'sqlite:///path'")
    if url.strip().lower() == "memory":
        return None
    scheme, sep, path = url.partition(":///")
    if scheme.lower() == "sqlite" and sep and path.strip():
        return path  # sqlite:///./x.db -> ./x.db; sqlite:////abs/x.db -> /abs/x.db
    if url.lower().startswith(("redis://", "rediss://", "unix://")):
        return None
    raise ConfigError(
        f"store={url!r} is not a store; use 'memory', 'sqlite:///path/to/offload.db' or "
        "'redis://host:6379/0' (OFFLOAD_STORE takes the same values)"
    )


def parse_routes(env: str, raw: str) -> dict[str, str]:
    """`OFFLOAD_ROUTES`: `pattern=lane,...` as a mapping."""
    routes: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        pattern, sep, lane = item.partition("=")
        if not sep or not pattern.strip():
            raise ConfigError(
                f"{env}={raw!r}: {item!r} is not `pattern=lane`; "
                "write e.g. `myapp.images.*=process,myapp.mail.*=thread`"
            )
        routes[pattern.strip()] = lane.strip()
    return routes


def parse_env(env: str, raw: str, kind: str) -> Any:
    """An `OFFLOAD_*` variable's text as the option's `kind` (bool, int, float, dict, str)."""
    if kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f"{env}={raw!r} is not a boolean; use 1/true/yes/on or 0/false/no/off")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env}={raw!r} is not a whole number") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{env}={raw!r} is not a number of seconds") from None
    if kind == "dict":
        return parse_routes(env, raw)
    return raw
