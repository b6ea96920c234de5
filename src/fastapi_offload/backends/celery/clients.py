"""The web process's Celery clients: an app that publishes, and one for the result store.

Blocking, like every Celery call: `CeleryBackend` runs these methods in worker threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from ..._models import TaskCall
from ..._remote_settings import backend_unavailable, safe_url
from .conf import publish_retry_policy, send_options
from .results import UNREADABLE, cancellable, write_marker, write_revoked
from .urls import check_result_store

__all__ = ["CeleryClients"]

logger = logging.getLogger("fastapi_offload.backends.celery")


class CeleryClients:
    """The two client apps of one `CeleryBackend`, configured with `conf` (shared by both).

    Raises `ConfigError` for a result store Celery cannot use.
    """

    def __init__(
        self, broker_url: str, result_url: str | None, conf: Mapping[str, Any], timeout: float
    ) -> None:
        self.broker_url = broker_url
        self.result_url = result_url
        self._timeout = timeout
        # Two apps on purpose: Celery's Redis result backend subscribes to each sent
        # task's result channel (`on_task_call`) and never drains it unless someone
        # waits on the result (celery/celery#5320, #6963), so the publishing app has
        # results disabled and a second app only reads and writes the result store.
        self.publisher = Celery("fastapi_offload.publisher", set_as_current=False)
        self.publisher.conf.update(conf, broker_url=broker_url, result_backend=None)
        self.results: Any = None
        self._results_app: Any = None
        if result_url:
            self._results_app = Celery("fastapi_offload.results", set_as_current=False)
            # Extended: the REVOKED record `cancel` writes keeps the task's name.
            self._results_app.conf.update(conf, result_backend=result_url, result_extended=True)
            self.results = check_result_store(self._results_app, result_url)

    def submit(self, call: TaskCall, queue: str) -> None:
        """Write the SENT marker, then publish; raises `BackendUnavailable` when either fails."""
        now = time.time()
        if self.results is not None:
            # The marker goes in before the message exists, so a worker's STARTED or
            # SUCCESS can never be overwritten by it.
            try:
                write_marker(self.results, call, now)
            except self.store_errors() as exc:
                raise backend_unavailable(
                    "celery",
                    self.result_url or "",
                    exc,
                    f"{call.name} (id {call.id}) was not submitted",
                ) from exc
        try:
            self.publisher.send_task(
                call.name,
                args=list(call.args),
                kwargs=dict(call.kwargs),
                task_id=call.id,
                queue=queue,
                retry=True,
                retry_policy=publish_retry_policy(),
                **send_options(call, now),
            )
        except (OperationalError, OSError) as exc:
            self.forget(call.id)
            raise backend_unavailable(
                "celery", self.broker_url, exc, f"{call.name} (id {call.id}) was not submitted"
            ) from exc

    def meta(self, task_id: str, what: str) -> Mapping[str, Any] | None:
        """The task's record in the result store; `None` for one this process cannot read
        (logged at WARNING). Raises `BackendUnavailable` saying `what` was not done."""
        try:
            meta: object = self.results.get_task_meta(task_id)
        except UNREADABLE as exc:
            # Written by something else (or for another serializer): not ours to vouch for.
            logger.warning(
                "the result-store record of %s cannot be read (%s: %s); its status is "
                "answered as unknown",
                task_id,
                type(exc).__name__,
                exc,
            )
            return None
        except self.store_errors() as exc:
            raise backend_unavailable(
                "celery", self.result_url or "", exc, f"task {task_id}: {what}"
            ) from exc
        return meta if isinstance(meta, Mapping) else None

    def cancel(self, task_id: str) -> bool:
        """Revoke the task unless the result store shows it unknown or ended (see
        `CeleryBackend.cancel`); raises `BackendUnavailable` when either is unreachable."""
        meta = None
        if self.results is not None:
            meta = self.meta(task_id, "the task was not cancelled")
            if not cancellable(meta):
                return False
        try:
            # `terminate`: the worker running it signals its pool process; a worker that
            # has it queued (or receives it later) drops it. Sent to every worker.
            self.publisher.control.revoke(task_id, terminate=True, signal="SIGTERM")
        except (OperationalError, OSError) as exc:
            raise backend_unavailable(
                "celery", self.broker_url, exc, f"task {task_id}: the task was not cancelled"
            ) from exc
        if meta is not None:
            try:
                write_revoked(self.results, task_id, meta)
            except self.store_errors() as exc:
                # The revoke went out: the task will not run, and a worker records
                # REVOKED when the message reaches it.
                logger.warning("could not record task %s as revoked yet (%s)", task_id, exc)
        return True

    def forget(self, task_id: str) -> None:
        if self.results is None:
            return
        try:
            self.results.forget(task_id)
        except self.store_errors():
            # The store is down too; the marker expires with the other results.
            logger.debug("could not remove the SENT marker of %s", task_id)

    def store_errors(self) -> tuple[type[BaseException], ...]:
        return (*getattr(self.results, "connection_errors", ()), OSError, OperationalError)

    def check_broker(self) -> bool:
        """Connect once; log a WARNING (and return `False`) when the broker is not reachable."""
        try:
            with self.publisher.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=self._timeout)
        except Exception as exc:
            logger.warning(
                "the Celery broker at %s is not reachable at startup (%s); tasks will be "
                "answered with 503 until it is",
                safe_url(self.broker_url),
                exc,
            )
            return False
        return True

    def count_workers(self, queue: str, window: float) -> int | None:
        """How many workers answer, within `window` seconds, that they consume `queue`;
        `None` when the broker could not be asked."""
        try:
            # A connection of its own, closed here: the call may outlive `close()` (it is
            # abandoned, not waited for, when the broker is slow; see `count_within`).
            with self.publisher.connection_for_write() as connection:
                inspect = self.publisher.control.inspect(timeout=window, connection=connection)
                replies: object = inspect.active_queues()
        except Exception as exc:  # whatever failed, the answer is "cannot tell"
            logger.debug("could not ask the Celery workers for their queues: %s", exc)
            return None
        if not isinstance(replies, Mapping):
            return 0  # no worker answered: Celery returns None
        return sum(
            1
            for queues in replies.values()
            if isinstance(queues, list)
            and any(isinstance(item, Mapping) and item.get("name") == queue for item in queues)
        )

    def close(self) -> None:
        self.publisher.close()
        if self._results_app is not None:
            self._results_app.close()
