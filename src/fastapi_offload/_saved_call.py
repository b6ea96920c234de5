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
signature, then that the function was declared in this process (`_call_registry`,
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
from collections.abc import Callable
from typing import Any

from ._call_registry import declared, registered
from ._errors import ConfigError, NotOffloadable
from ._saved_body import Call, decode, encode, path_of

__all__ = ["SavedCalls", "Untrusted"]

logger = logging.getLogger("fastapi_offload")

MAGIC = b"offload-call-1:"
MAX_SAVED = 16 * 1024 * 1024  # bytes: a larger call is refused when saved, unread when loaded
_SIG = 64  # hex characters of an HMAC-SHA256


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
            func = declared(header["func"], requeue=started)
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
