"""Options of `Offload(...)`: keyword arguments > `OFFLOAD_*` environment > defaults."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from typing_extensions import deprecated

from ._checks import check_bool, check_int, check_lane, check_seconds
from ._config_values import check_secret_key, parse_env, store_path
from ._errors import ConfigError
from ._logging import show_logs
from ._names import RENAMED_ENV, check_option_names, renamed_env, warn_unknown_env

__all__ = ["OffloadConfig"]

_PRIORITIES = ("normal", "low", "idle")


def _opt(default: Any, env: str, doc: str, **extra: Any) -> Any:
    # `kind` tells the environment parser what to make of the text.
    kind = extra.pop("kind", type(default).__name__)
    shown = extra.pop("repr", True)  # a secret stays out of `repr` (and so out of logs)
    metadata = {"env": env, "doc": doc, "kind": kind, **extra}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata, repr=shown)
    return field(default=default, metadata=metadata, repr=shown)


def _cpus() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class OffloadConfig:
    """Every option, validated once. `repr` shows the values in force."""

    thread_workers: int = _opt(
        16,
        "OFFLOAD_THREAD_WORKERS",
        "Threads of the thread lane's own limiter (never anyio's default 40-token one, "
        "which serves sync endpoints).",
    )
    process_workers: int = _opt(
        0,
        "OFFLOAD_PROCESS_WORKERS",
        "Worker processes of the process lane, per web process: `uvicorn --workers N` "
        "runs N times as many (docs/lanes.md); 0 means one per CPU core.",
    )
    max_pending: int = _opt(
        1000,
        "OFFLOAD_MAX_PENDING",
        "Per lane: tasks accepted but not yet running. When reached, `add_task` raises "
        "`QueueFull` (a 503 with `Retry-After`).",
    )
    shutdown_timeout: float = _opt(
        25.0,
        "OFFLOAD_SHUTDOWN_TIMEOUT",
        "The whole budget, in seconds, of the runtime's shutdown: tasks get it less a "
        "cancel grace of min(1 s, 10%) to finish, then the rest are cancelled and given "
        "the grace (each is logged by name and id).",
    )
    loop_block_threshold: float = _opt(
        0.1,
        "OFFLOAD_LOOP_BLOCK_THRESHOLD",
        "Seconds one step of an `async def` task may hold the event loop before it is "
        "reported; 0 turns the reports off.",
    )
    process_priority: str = _opt(
        "low",
        "OFFLOAD_PROCESS_PRIORITY",
        "CPU priority of process workers: `normal`, `low` (nice 10) or `idle` "
        "(Linux SCHED_IDLE), so the API process wins the CPU when both want it. "
        "The measured p99 and wall time of each are in the lanes guide "
        "(docs/lanes.md, CPU advice). `low` kept the `/health` p99 1.4-1.7x lower than "
        "`normal`. A nice value counts only against processes in the same cgroup "
        "(container) or session: beside CPU-bound processes there, `low` workers took 5x as "
        "long for no gain in p99, so choose `normal` where such processes share the web "
        "process's container. `idle` workers run only when no other process wants a CPU: "
        "use it on a host dedicated to the API.",
    )
    prestart_workers: bool = _opt(
        False,
        "OFFLOAD_PRESTART_WORKERS",
        "Start the process workers at startup (and keep them warm) so the first CPU task "
        "does not pay the worker's cold start.",
    )
    auto_promote: bool = _opt(
        False,
        "OFFLOAD_AUTO_PROMOTE",
        "Move sync callables that the thread lane measures as CPU-bound to the process "
        "lane, when they and their arguments can travel there.",
    )
    timeout: float | None = _opt(
        None,
        "OFFLOAD_TIMEOUT",
        "Default timeout in seconds for every task; none when unset.",
        kind="float",
    )
    status_capacity: int = _opt(
        10_000,
        "OFFLOAD_STATUS_CAPACITY",
        "Finished tasks whose status is kept (oldest forgotten first). Pending and "
        "running tasks are always kept.",
    )
    key_ttl: float = _opt(
        24 * 3600.0,
        "OFFLOAD_KEY_TTL",
        "Seconds an idempotency key (`tasks.options(key=...)`) stays taken after its task "
        "finished: an `add_task` with that key meanwhile returns the same task "
        "(`handle.existing`) and starts nothing. The memory store keeps at most "
        "`status_capacity` keys.",
    )
    keep_result: bool = _opt(
        False,
        "OFFLOAD_KEEP_RESULT",
        "Keep every succeeded task's return value (as JSON) in its status, "
        "`TaskInfo.result`; per task: `@task(keep_result=True)` or "
        "`tasks.options(keep_result=...)`. Kept as long as the status is. Its old name "
        "`keep_results` (`OFFLOAD_KEEP_RESULTS`) still works, with a `DeprecationWarning`, "
        "until the next release.",
    )
    result_max_bytes: int = _opt(
        1_048_576,
        "OFFLOAD_RESULT_MAX_BYTES",
        "Largest kept result, in bytes of JSON; a larger one is not kept (the task still "
        "succeeds, and `error` gives the size). The memory store keeps at most 64 times "
        "this in all, dropping the oldest results first.",
    )
    wait_for_tasks: bool = _opt(
        False,
        "OFFLOAD_WAIT_FOR_TASKS",
        "With the lifespan too, each request's ASGI call waits for the tasks it added, as "
        "with `BackgroundTasks` (and without a lifespan): for test suites that assert a "
        "task's effect right after `client.post(...)`. Tasks still run on their lanes, "
        "with ids and status; leave it off in production, where a slow task would hold "
        "its request's connection.",
    )
    tracing: bool = _opt(
        False,
        "OFFLOAD_TRACING",
        "An OpenTelemetry span per local task (all its attempts), a child of the request's "
        "span when the app is instrumented; needs the `otel` extra.",
    )
    routes: Mapping[str, str] = _opt(
        {},
        "OFFLOAD_ROUTES",
        "Callable name patterns (fnmatch, against `module.qualname`) mapped to lanes, "
        "e.g. `{'myapp.images.*': 'process'}`; env form `myapp.images.*=process,...`.",
    )
    backend: str = _opt(
        "local",
        "OFFLOAD_BACKEND",
        "`local` (the loop / thread / process lanes), or a remote backend's name "
        "(`celery`, `rq`); `Offload(backend=...)` also takes a `Backend` instance.",
    )
    store: str = _opt(
        "memory",
        "OFFLOAD_STORE",
        "Where task statuses are kept: `memory` (this process only), or "
        "`sqlite:///path/to/offload.db` (durable: every task is written before its "
        "request's response, survives a killed process, and is shared by every worker "
        "process on the host; a relative path is relative to the working directory), or "
        "`redis://host:6379/0` (the same, shared by several hosts; needs the `redis` extra).",
    )
    store_lease: float = _opt(
        15.0,
        "OFFLOAD_STORE_LEASE",
        "Durable stores: seconds a process's claim on its unfinished tasks lasts "
        "without a heartbeat (one every third of it). When a process stops, another "
        "(or its restart) reclaims its tasks this long after the last heartbeat.",
    )
    store_retention: float = _opt(
        7 * 24 * 3600.0,
        "OFFLOAD_STORE_RETENTION",
        "Durable stores: seconds a finished task's status is kept (at most "
        "`status_capacity` of them in all, oldest first out).",
    )
    secret_key: str | None = _opt(
        None,
        "OFFLOAD_SECRET_KEY",
        "Durable stores: the key (16 characters or more) that signs the saved call of a "
        "`requeue=True` task (HMAC-SHA256), so a process reclaiming it runs only what "
        "this app wrote. Unset with SQLite: a random key kept next to the file "
        "(`<file>.key`, mode 0600). Unset with Redis: `requeue=True` tasks are refused. "
        "Give every process (and host) that shares the store the same key.",
        kind="str",
        repr=False,
    )
    store_timeout: float = _opt(
        1.0,
        "OFFLOAD_STORE_TIMEOUT",
        "Durable stores: seconds one read or write of the store may take. A store that "
        "does not answer in time (down, frozen, locked) makes the request a `503` with "
        "`Retry-After` (a status read too: never a 404), and later calls fail at once "
        "until a probe, once a second, finds it answering again.",
    )

    def __post_init__(self) -> None:
        for name in ("thread_workers", "max_pending", "status_capacity", "result_max_bytes"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("process_workers", self.process_workers, minimum=0)
        check_seconds("shutdown_timeout", self.shutdown_timeout, minimum=0)
        check_seconds("loop_block_threshold", self.loop_block_threshold, minimum=0)
        check_seconds("store_lease", self.store_lease, minimum=0, exclusive=True)
        check_seconds("store_retention", self.store_retention, minimum=0, exclusive=True)
        check_seconds("store_timeout", self.store_timeout, minimum=0, exclusive=True)
        check_seconds("key_ttl", self.key_ttl, minimum=0)
        store_path(self.store)  # raises ConfigError for a bad URL
        check_secret_key(self.secret_key)
        if self.timeout is not None:
            check_seconds("timeout", self.timeout, minimum=0, exclusive=True)
        if self.process_priority not in _PRIORITIES:
            raise ConfigError(
                f"process_priority={self.process_priority!r} is not accepted; "
                f"use one of {', '.join(_PRIORITIES)}"
            )
        for name in (
            "prestart_workers",
            "auto_promote",
            "keep_result",
            "wait_for_tasks",
            "tracing",
        ):
            check_bool(name, getattr(self, name))
        if not isinstance(self.routes, Mapping):
            raise ConfigError(f"routes={self.routes!r} must map name patterns to lanes")
        for pattern, lane in self.routes.items():
            check_lane(f"routes[{pattern!r}]", lane)
        object.__setattr__(self, "routes", dict(self.routes))

    @property
    @deprecated("OffloadConfig.keep_results is now keep_result; the old name goes next release")
    def keep_results(self) -> bool:
        """The old name of `keep_result`, for one release."""
        return self.keep_result

    @property
    def store_path(self) -> str | None:
        """The SQLite file of a `sqlite:///...` store, else `None`."""
        return store_path(self.store)

    @property
    def durable_store(self) -> bool:
        """A store other than `memory`."""
        return self.store.strip().lower() != "memory"

    @property
    def effective_process_workers(self) -> int:
        return self.process_workers or _cpus()

    @classmethod
    def resolve(
        cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> OffloadConfig:
        """Build the config from keyword options, then `OFFLOAD_*` variables, then defaults."""
        # The first step of every `Offload` and default runtime, and the first that may
        # log (below): from here on the package's lines are visible, levelled and named.
        show_logs()
        environ = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        options = check_option_names(options, fields)
        warn_unknown_env(environ, known_variables())
        values: dict[str, Any] = {}
        from_env: dict[str, tuple[str, str]] = {}
        for name, f in fields.items():
            if name in options:
                values[name] = options[name]
                continue
            env = f.metadata["env"]
            raw = environ.get(env)
            if (old := renamed_env(environ, env)) is not None:
                env, raw = old
            if raw is not None and raw.strip() != "":
                values[name] = parse_env(env, raw.strip(), f.metadata["kind"])
                from_env[name] = (env, raw)
        try:
            return cls(**values)
        except ConfigError as exc:
            # A value from the environment: name the variable, which is what to fix.
            for name, (env, raw) in from_env.items():
                if str(exc).startswith((f"{name}=", f"{name}[")):
                    raise ConfigError(f"{env}={raw!r} (the {name} option): {exc}") from None
            raise


def known_variables() -> frozenset[str]:
    """Every `OFFLOAD_*` variable the package reads: the options', the remote backends'
    (`backends._settings`) and the renamed ones still honoured."""
    from ._remote_settings import RemoteSettings  # the backends package imports no _config

    remote = (f"OFFLOAD_{f.name.upper()}" for f in dataclasses.fields(RemoteSettings))
    options = (str(f.metadata["env"]) for f in dataclasses.fields(OffloadConfig))
    return frozenset((*options, *remote, *RENAMED_ENV))
