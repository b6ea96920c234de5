"""The key that signs saved calls (`_saved_call`): `OFFLOAD_SECRET_KEY`, or a key file
created next to a SQLite database on first use."""

from __future__ import annotations

import logging
import os
import secrets
import stat

from ._errors import ConfigError

__all__ = ["load_key"]

logger = logging.getLogger("fastapi_offload")


def load_key(secret_key: str | None, sqlite_path: str | None) -> bytes | None:
    """The key that signs saved calls: `secret_key`, else (SQLite) the key file next to
    the database, created with mode 0600 on first use; else `None`. Runs in a thread."""
    if secret_key is not None:
        return secret_key.encode()
    if sqlite_path is None:
        return None
    path = os.path.abspath(sqlite_path) + ".key"
    try:
        _create_key(path)
        with open(path, "rb") as file:
            key = file.read(4097).strip()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(
            f"secret_key: the key file {path} (which signs the saved calls of requeue=True "
            f"and delayed tasks when OFFLOAD_SECRET_KEY is unset) cannot be created or read "
            f"({exc}); make its directory writable, or set OFFLOAD_SECRET_KEY"
        ) from exc
    if not 16 <= len(key) <= 4096:
        raise ConfigError(
            f"secret_key: the key file {path} holds {len(key)} bytes, not a key of 16 to "
            "4096 bytes; delete it (a new one is made at start-up; saved calls signed with "
            "the old one are then not run again) or set OFFLOAD_SECRET_KEY"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "the key file %s can be read by other users (mode %o): chmod 600 it, or anyone "
            "who can read it and write the task store can make this app run requeue=True "
            "tasks with arguments of their choosing",
            path,
            stat.S_IMODE(mode),
        )
    return key


def _create_key(path: str) -> None:
    # Written whole under a temporary name, then linked into place: a process starting at
    # the same moment sees no key file or a complete one, and the first link wins.
    if os.path.exists(path):
        return
    temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, secrets.token_hex(32).encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
