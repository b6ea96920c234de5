"""Kept results: a task's return value as JSON text, bounded in size.

A result is encoded where the value is (in the worker process for the process lane,
in the worker thread for the thread lane, and in a thread for a large value of the
loop lane), so a value that cannot cross a process boundary as JSON never has to.

Encoding stops as soon as the text passes the limit: a task returning 1 GB costs the
time and memory of `result_max_bytes` of JSON, not of a gigabyte. The C encoder of
`json` holds the GIL until it returns, so a whole encode of a large value in a worker
thread would freeze the event loop just the same.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["LIMIT", "SMALL", "Kept", "decode", "encode", "is_small", "size_text"]

LIMIT = 1_048_576  # the default `result_max_bytes`

# (JSON text or None, why it was not kept or None)
Kept = tuple[str | None, str | None]

# Strict JSON (no NaN or Infinity, which a browser's `JSON.parse` refuses), compact.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
# What the loop lane encodes on the loop itself: a value whose JSON is surely at most
# this long (~0.5 ms of the C encoder); anything larger is encoded in a thread.
SMALL = 65_536


class _Over(Exception):
    """The text passes the limit: stop encoding."""


def encode(value: Any, limit: int) -> Kept:
    """`value` as compact JSON, or `None` and the reason it is not kept.

    Strict JSON (no NaN or Infinity, which a browser's `JSON.parse` refuses), the same
    text as `json.dumps` with compact separators. A value over `limit` bytes is not
    kept, and its encoding stops near the limit: a quick walk sums the least its text
    can be and gives up once that passes the limit, before the C encoder runs.
    """
    try:
        if _measure(value, limit) is not None:
            # Its text is at most ~12 times the limit (every character escaped): the C
            # encoder is bounded too, and keeps its speed.
            text = _ENCODER.encode(value)
        else:  # a type the walk does not size (subclasses...): piece by piece
            sink = _Sink(limit)
            _encode_into(value, sink)
            text = "".join(sink.parts)
    except _Over:
        return None, (
            f"result not kept: too large (more than {size_text(limit)} of JSON, over "
            f"result_max_bytes={limit}); raise OFFLOAD_RESULT_MAX_BYTES, or store the data "
            "elsewhere and return a reference to it"
        )
    except (TypeError, ValueError, RecursionError) as exc:
        return None, (
            f"result not kept: {type(value).__qualname__} is not JSON-serializable ({exc}); "
            "return plain JSON data (dict, list, str, int, float, bool, None)"
        )
    if len(text) > limit:  # ensure_ascii: one byte per character
        return None, (
            f"result not kept: too large ({size_text(len(text))} of JSON, over "
            f"result_max_bytes={limit}); raise OFFLOAD_RESULT_MAX_BYTES, or store the data "
            "elsewhere and return a reference to it"
        )
    return text, None


def is_small(value: Any) -> bool:
    """Whether `value`'s JSON is surely at most `SMALL` characters (a cheap encode, done
    on the loop by the loop lane); False also for what the quick walk does not size."""
    try:
        upper = _measure(value, SMALL)
    except _Over:
        return False
    return upper is not None and upper <= SMALL


def _measure(value: Any, room: int) -> int | None:
    # Walks `value` summing the least its JSON text can be (every node is at least one
    # character, so the walk is bounded by `room` too) and raises `_Over` once that
    # passes `room`; returns the most the text can be, or None for a type the walk
    # does not size. A container's length is counted before its items are pushed, so a
    # huge list costs nothing.
    stack = [value]
    lower = upper = 0
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            size = len(item) + 2
            lower += size
            if lower > room:  # before looking at its characters: it may be a gigabyte
                raise _Over
            upper += size if item.isascii() and item.isprintable() else 6 * size
        elif kind is int:
            digits = item.bit_length() * 30103 // 100000  # log10(2): one digit short at most
            lower += digits or 1
            upper += digits + 2
        elif kind is float:
            lower += 3  # 1.0
            upper += 24
        elif item is None or kind is bool:
            lower += 4
            upper += 5
        elif kind is list or kind is tuple:
            size = max(len(item) + 1, 2)  # brackets and commas
            lower += size
            upper += size
            if lower + len(item) > room:  # and each item at least one character
                raise _Over
            stack.extend(item)
        elif kind is dict:
            size = max(4 * len(item) + 1, 2)  # braces, commas, colons, quotes of keys
            lower += size
            upper += size
            if lower + len(item) > room:  # and each value at least one character
                raise _Over
            for key, child in item.items():
                key_kind = type(key)
                if key_kind is not str and key_kind not in _KEY_KINDS:
                    return None
                stack.append(child)
                # A non-string key is written as its `str` (True: true, None: null, the
                # same lengths), in quotes.
                size = len(key) if key_kind is str else len(str(key))
                lower += size
                upper += size if key_kind is not str or key.isascii() else 6 * size
        else:
            return None
        if lower > room:
            raise _Over
    return upper


_KEY_KINDS = frozenset({int, float, bool, type(None)})


class _Sink:
    """The text so far, and its size; `add` raises `_Over` once it passes `limit`."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit

    def add(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.limit:
            raise _Over
        self.parts.append(text)


def _encode_into(value: Any, sink: _Sink) -> None:
    # The slow path, for values holding types the walk does not size (subclasses of
    # dict, list, str...): containers are walked here, every part the walk can size
    # goes to the C encoder whole. Pieces are joined with the encoder's own separators,
    # so the text is the same as a whole `json.dumps`.
    if _measure(value, sink.limit - sink.size) is not None:
        sink.add(_ENCODER.encode(value))
    elif isinstance(value, str):
        sink.add(_ENCODER.encode(value))
    elif isinstance(value, dict):
        sink.add("{")
        for index, (key, child) in enumerate(value.items()):
            # A non-string key as `json` turns it into one (or refuses it).
            if isinstance(key, str):
                name = _ENCODER.encode(key)
            else:
                name = _ENCODER.encode({key: 0})[1:-3]
            sink.add(f",{name}:" if index else f"{name}:")
            _encode_into(child, sink)
        sink.add("}")
    elif isinstance(value, list | tuple):
        sink.add("[")
        for index, child in enumerate(value):
            if index:
                sink.add(",")
            _encode_into(child, sink)
        sink.add("]")
    else:
        sink.add(_ENCODER.encode(value))


def decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def size_text(size: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
