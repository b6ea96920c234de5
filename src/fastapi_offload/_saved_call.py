"""The saved call of a task a durable store keeps so that another process can run it: a
`requeue=True` task, run again after its own process died, and a delayed task
(`options(delay=/at=)`), run when due by whichever process holds it then; and the only
way back from those bytes to a call.

A store row is input: anyone who can write to a shared Redis or to the SQLite file can
write one. So a saved call is

    b"offload-call-1:" + HMAC-SHA256(key, id + body).hex() + b":" + body

where `body` is a JSON header (the function's `module:qualname`, its lane, timeout,
retry and result settings, its due time, and its arguments when they are plain JSON
data), followed, only for arguments JSON cannot carry exactly, by a newline and their
pickle (`_saved_body` writes and reads the body). Loading checks the size, then the
signature, then that the function was declared in this process (the registries below,
filled by the decorators when their module is imported) before it unpickles anything;
nothing is ever imported by name. A call that may have started already (it is run
*again*) must name a function declared `requeue=True`; a delayed call that never
started, any function declared with `@task`, `cpu_bound` or `io_bound`. The id is in the
signature, so a valid call copied into another row does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Callable
from typing import Any

from ._errors import ConfigError, NotOffloadable
from ._saved_body import Call, decode, encode, path_of

__all__ = ["SavedCalls", "Untrusted", "load_key", "register", "registered"]

logger = logging.getLogger("fastapi_offload")

MAGIC = b"offload-call-1:"
MAX_SAVED = 16 * 1024 * 1024  # bytes: a larger call is refused when saved, unread when loaded
_SIG = 64  # hex characters of an HMAC-SHA256

# Functions declared `requeue=True`, by `module:qualname`: the only ones a reclaimed row
# that may have started may name. Filled at import by the decorators; a later declaration
# of the same name replaces the earlier one, so nothing needs resetting.
_REQUEUE: dict[str, Callable[..., Any]] = {}
# Every function declared with a decorator (`requeue=True` or not): the only ones a
# delayed call that never started may name.
_DECLARED: dict[str, Callable[..., Any]] = {}


def register(func: Callable[..., Any], *, requeue: bool = True) -> None:
    """Declare `func` runnable from a saved call: when it is delayed, and, with
    `requeue=True` (`@task(requeue=True)`), again after its process died."""
    path = path_of(func)
    _DECLARED[path] = func
    if requeue:
        _REQUEUE[path] = func
    else:
        _REQUEUE.pop(path, None)  # declared again without it: not run again any more


def registered(func: Callable[..., Any], *, requeue: bool = True) -> bool:
    found = (_REQUEUE if requeue else _DECLARED).get(path_of(func))
    return found is func


class Untrusted(Exception):
    """A saved call that will not be run: why, in words for the task's status."""


class SavedCalls:
    """Saves and loads the calls of `requeue=True` and delayed tasks, signed with `key`.

    `key` is `None` when the store has none (Redis without `OFFLOAD_SECRET_KEY`): then a
    call cannot be saved (a `ConfigError` in the request that adds it) and every saved
    call found is refused.
    """

    def __init__(self, key: bytes | None) -> None:
        self.key = key

    def dump(self, task_id: str, func: Callable[..., Any], **call: Any) -> bytes:
        """The signed bytes of one call; `call` holds args, kwargs, lane, timeout,
        retries, retry_delay, keep_result, retry_backoff, retry_on, after, owner,
        requeue and due_at (`None`: not delayed, so saved for `requeue=True`)."""
        name = path_of(func)
        delayed = call.get("due_at") is not None
        why = (
            "is delayed (delay=/at=), so its call is kept in the task store until it is due"
            if delayed
            else "is declared requeue=True, so its call is kept in the task store to be run "
            "again after a crash"
        )
        if delayed and not registered(func, requeue=False):
            raise ConfigError(
                f"{name} is delayed (delay=/at=) with a durable store: the store keeps its "
                "call until it is due, and the process that runs it then (this one after a "
                "restart, or another sharing the store) runs only functions declared where "
                f"they are defined: decorate {name.rpartition(':')[2]} with @task (or "
                "cpu_bound/io_bound), in a module every process imports"
            )
        if not delayed and not registered(func):
            raise ConfigError(
                f"{name} is given requeue=True per call, but a process reclaiming it after a "
                "crash runs only functions declared requeue=True where they are defined: "
                "decorate it with @task(requeue=True) (or cpu_bound/io_bound(requeue=True))"
            )
        if self.key is None:
            raise ConfigError(
                f"{name} {why}: here the Redis store, where anyone who can write to that "
                "Redis could plant a call, so saved calls are signed: set OFFLOAD_SECRET_KEY "
                "(or Offload(secret_key=...)) to the same secret in every process that shares "
                "the store, e.g. from python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        args, kwargs = call.pop("args"), call.pop("kwargs")
        body = encode({"func": name, **call}, args, kwargs, why=why, delayed=delayed)
        if len(body) > MAX_SAVED:
            raise NotOffloadable(
                f"{name} {why}, but its saved call would take {len(body)} bytes (more than "
                f"{MAX_SAVED}): pass a reference to the data (a path, a key) instead of the "
                "data"
            )
        return MAGIC + self._sign(task_id, body).encode() + b":" + body

    def load(self, task_id: str, saved: bytes | None, *, started: bool = True) -> Call:
        """The call saved for `task_id`; `Untrusted` (with the reason) if it is not one
        this app wrote, or names a function not declared here: declared `requeue=True`
        when it may have `started` already (it would run again), declared at all when it
        is a delayed call that never started."""
        if not saved:
            raise Untrusted("no saved call")
        if len(saved) > len(MAGIC) + _SIG + 1 + MAX_SAVED:
            raise Untrusted(f"its saved call is too large ({len(saved)} bytes)")
        if not saved.startswith(MAGIC) or saved[len(MAGIC) + _SIG : len(MAGIC) + _SIG + 1] != b":":
            raise Untrusted(
                "its saved call is not in the signed format (written by someone else, or by "
                "an older fastapi-offload, which saved plain pickles)"
            )
        if self.key is None:
            raise Untrusted("its saved call cannot be checked: the store has no secret_key")
        signature = saved[len(MAGIC) : len(MAGIC) + _SIG].decode("ascii", "replace")
        body = saved[len(MAGIC) + _SIG + 1 :]
        if not hmac.compare_digest(signature, self._sign(task_id, body)):
            raise Untrusted(
                "its saved call's signature does not match (not written by a process with "
                "this app's secret_key, or copied from another task)"
            )
        head, _, pickled = body.partition(b"\n")
        try:
            header = json.loads(head)
            func = (_REQUEUE if started else _DECLARED).get(header["func"])
            if func is None:
                raise Untrusted(
                    f"it names {str(header['func'])[:200]!r}, which no module imported by this "
                    "process declares "
                    + ("requeue=True" if started else "with @task, cpu_bound or io_bound")
                )
            return decode(header, pickled, func)
        except Untrusted:
            raise
        except Exception as exc:
            raise Untrusted(f"its saved call does not load ({type(exc).__name__}: {exc})") from exc

    def _sign(self, task_id: str, body: bytes) -> str:
        assert self.key is not None
        mac = hmac.new(
            self.key, b"fastapi-offload call\0" + task_id.encode() + b"\0", hashlib.sha256
        )
        mac.update(body)
        return mac.hexdigest()


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
