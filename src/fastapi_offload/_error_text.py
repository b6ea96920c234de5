"""An error as it is kept: bounded in size, with URL passwords masked.

Every error text the package records (a task's `error` in every store, the Celery and
RQ statuses, what a process worker sends back) or writes to its logs goes through
here. A task may raise anything: a 10 MB message would otherwise be stored, served and
streamed whole, and a message quoting a connection URL would hand its password to
whoever can read a status.

Imported by process workers before their first task: it must stay cheap (only `re`).
"""

from __future__ import annotations

import re
import traceback

__all__ = ["LIMIT", "error_text", "mask", "scrub_args", "traceback_text"]

LIMIT = 4096  # characters of kept error text, before the truncation mark
TRACEBACK_LIMIT = 32_768  # characters of a logged or carried traceback

# scheme://user:password@host (the user may be empty: redis://:pw@host). The password
# runs to the last `@` before whitespace: over-masking a path is harmless, showing
# part of a password is not. Every part has a bounded length, so a long run of letters
# costs linear time, not quadratic (measured: 30 ms for 4 kB of "x" unbounded).
_URL = r"([A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s:/@]{0,256}:)"
_URL_PASSWORD = re.compile(_URL + r"[^\s@]{1,1024}@")
# The same, cut off by the size cap before its `@`.
_DANGLING = re.compile(_URL + r"[^\s@]{0,1024}\Z")
# The mark of a text capped already (by a worker): capped again, it would lose its size.
_MARKED = re.compile(r"… \[truncated, [^\]\n]{1,40} in all\]\Z")
# Read past the cap before masking, so a URL straddling the cut is still recognised.
_MARGIN = 1024


def mask(text: str) -> str:
    """`text` with the password of every `scheme://user:password@host` as `***`."""
    if "://" not in text:  # the common case costs one scan
        return text
    return _URL_PASSWORD.sub(r"\1***@", text)


def error_text(error: BaseException | str, limit: int = LIMIT) -> str:
    """An exception (its `repr`, the documented form of a status's `error`) or a
    message, as kept: passwords masked, at most `limit` characters plus a mark
    saying how long it was."""
    if isinstance(error, str):
        text, size = error, len(error)
    else:
        text, size = _repr(error, limit + _MARGIN)
    return _bounded(text, size, limit)


def traceback_text(exc: BaseException, limit: int = TRACEBACK_LIMIT) -> str:
    """`exc`'s formatted traceback for a log: each part capped and masked like an error
    text, the whole at most about `limit` characters (its end kept: the innermost frames
    and the message)."""
    parts = [
        _bounded(part, len(part), LIMIT)
        for part in traceback.TracebackException.from_exception(exc).format()
    ]
    text = "".join(parts).rstrip()
    if len(text) > limit:
        text = f"[… {len(text) - limit} characters of traceback left out …]\n" + text[-limit:]
    return text


def scrub_args(exc: BaseException, limit: int = LIMIT) -> None:
    """Cap and mask `exc`'s string arguments in place, before a worker raises it to
    Celery or RQ, which store its message (and RQ its traceback) themselves."""
    try:
        args = exc.args
        if not any(isinstance(arg, str) for arg in args):
            return
        scrubbed = tuple(
            _bounded(arg, len(arg), limit) if isinstance(arg, str) else arg for arg in args
        )
        if scrubbed != args:
            exc.args = scrubbed
    except Exception:  # an exotic exception type (read-only args): raised as it is
        return


def _repr(exc: BaseException, room: int) -> tuple[str, int]:
    # repr() of a 10 MB message builds a second 10 MB string (and more with escapes):
    # with the default repr, only the start of each long argument is turned into text.
    try:
        args = exc.args
        if type(exc).__repr__ is BaseException.__repr__ and any(
            isinstance(arg, str | bytes) and len(arg) > room for arg in args
        ):
            heads = tuple(arg[:room] if isinstance(arg, str | bytes) else arg for arg in args)
            shown = repr(heads[0]) if len(heads) == 1 else repr(heads)[1:-1]
            text = f"{type(exc).__name__}({shown})"
            cut = sum(len(a) - len(h) for a, h in zip(args, heads, strict=True))
            return text, len(text) + cut
        text = repr(exc)
    except Exception:
        text = f"{type(exc).__name__}(<repr failed>)"
    return text, len(text)


def _bounded(text: str, size: int, limit: int) -> str:
    if len(text) <= limit or (len(text) <= limit + 64 and _MARKED.search(text)):
        return mask(text)
    head = mask(text[: limit + _MARGIN])[:limit]
    if "://" in head:
        head = _DANGLING.sub(r"\1***", head)
    return f"{head}… [truncated, {_size(size)} in all]"


def _size(size: int) -> str:
    # Characters, shown like `_results.size_text` shows bytes.
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if size >= scale:
            return f"{size / scale:.1f} {unit} characters"
    return f"{size} characters"
