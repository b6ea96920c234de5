"""What a routed call must satisfy to be admitted, beyond its lane (`core.routing`):
the rules that need the runtime's state, checked in `add_task`, inside the request."""

from __future__ import annotations

from collections.abc import Callable

from .._errors import ConfigError, NotOffloadable
from .._record import TaskRecord
from ..lanes.remote import RemoteLane
from .ledger import Ledger

__all__ = ["check_admissible"]


def check_admissible(
    record: TaskRecord,
    ledger: Ledger,
    is_local: Callable[[TaskRecord], bool],
    *,
    detached: bool,
    remote: RemoteLane | None,
) -> None:
    """Raise `NotOffloadable` or `ConfigError`, naming the task, for a call that cannot
    run as asked: `after=` a remote task, a delay without the lifespan, the remote lane
    without a backend."""
    for earlier_id in record.after:
        earlier = ledger.find(earlier_id)
        if earlier is not None and not is_local(earlier):
            raise NotOffloadable(
                f"{record.name}: after= names task {earlier_id}, which a remote backend "
                "runs; only tasks of the local lanes can be waited for"
            )
    if record.due_at is not None and record.lane != "remote" and not detached:
        # (A remote task is sent before the response, and its backend holds it.)
        raise ConfigError(
            f"{record.name}: delay= and at= need the Offload lifespan. Without it (the "
            "default runtime) a request's tasks run inside that request, which would "
            "stay open until the task is due: use FastAPI(lifespan=offload.lifespan), or "
            "`async with offload.lifespan(app):` inside a lifespan of your own"
        )
    if record.lane == "remote" and remote is None:
        raise ConfigError(
            f"{record.name} was routed to lane 'remote' but no backend is "
            "configured: set OFFLOAD_BACKEND=celery|rq or Offload(backend=...)"
        )
