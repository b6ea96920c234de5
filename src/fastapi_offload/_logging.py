"""The package's log lines, visible when the app configured no logging of its own.

uvicorn's default config gives handlers to its own loggers only and leaves the root
logger bare: the package's INFO lines were dropped and its warnings went out through
`logging.lastResort`, with neither level nor logger name. `show_logs()` attaches one
handler to the `fastapi_offload` logger, written like uvicorn's lines
(`INFO:     fastapi_offload: ...`), that writes a record only when no other handler
would: as soon as the app has handlers of its own (on the root logger, ours or a
child), its config alone applies. The root logger is never touched.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # subscriptable at run time only from Python 3.11
    _StreamHandler = logging.StreamHandler

__all__ = ["PackageHandler", "show_logs"]

NAME = "fastapi_offload"


class PackageHandler(_StreamHandler):
    """Writes the package's records to stderr while nothing else would."""

    def __init__(self) -> None:
        super().__init__()  # sys.stderr, where uvicorn writes its own lines
        self.setFormatter(_UvicornLike())
        self.level_set = False  # whether `show_logs` set the logger's level to INFO

    def filter(self, record: logging.LogRecord) -> bool:
        # Decided per record, not once: an app may configure logging after it created
        # its Offload (at import), and must then get its config alone, no duplicates.
        if _others_handle(logging.getLogger(record.name), self):
            _step_aside(self)
            return False
        return super().filter(record)


class _UvicornLike(logging.Formatter):
    # uvicorn's `%(levelprefix)s %(message)s`, with the logger's name: the level and a
    # colon padded to 9 characters, so the messages line up with uvicorn's own.
    def __init__(self) -> None:
        super().__init__("%(levelprefix)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.levelprefix = f"{record.levelname}:".ljust(9)
        return super().formatMessage(record)


def show_logs() -> None:
    """Make the package's INFO and WARNING lines visible if the app configured nothing.

    Called where an `Offload` is created and where a runtime starts: by the start the
    app's own config (set up in its `main`, or by `--log-config`) is in place, and the
    handler steps aside for it. Idempotent.
    """
    package = logging.getLogger(NAME)
    ours = next((h for h in package.handlers if isinstance(h, PackageHandler)), None)
    if _others_handle(package, ours) or _children_configured():
        if ours is not None:
            _step_aside(ours)
        return
    if ours is None:
        ours = PackageHandler()
        package.addHandler(ours)
    if package.level == logging.NOTSET:
        # Without a level of its own, the logger inherits the root's WARNING and the
        # INFO lines (start-up, no lifespan, shutdown) never reach any handler.
        package.setLevel(logging.INFO)
        ours.level_set = True


def _others_handle(logger: logging.Logger, ours: logging.Handler | None) -> bool:
    # Whether a handler other than ours would see this logger's records: the chain
    # `Logger.callHandlers` walks, up to the root.
    current: logging.Logger | None = logger
    while current is not None:
        if any(handler is not ours for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def _children_configured() -> bool:
    # An app that gave handlers to `fastapi_offload.monitor` (say) configured our logging
    # too: our INFO level would change what its handlers get.
    loggers = list(logging.root.manager.loggerDict.items())  # a copy: other threads add
    return any(
        name.startswith(f"{NAME}.") and isinstance(logger, logging.Logger) and logger.handlers
        for name, logger in loggers
    )


def _step_aside(ours: PackageHandler) -> None:
    # The app configured logging: undo the level too, so that its root level (say
    # WARNING) decides again. Not the handler list: `callHandlers` may be iterating it.
    if ours.level_set:
        ours.level_set = False
        package = logging.getLogger(NAME)
        if package.level == logging.INFO:
            package.setLevel(logging.NOTSET)
