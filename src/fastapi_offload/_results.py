"""Kept results: a task's return value as JSON text, bounded in size.

A result is encoded where the value is (in the worker process for the process lane,
in the worker thread for the thread lane), so the event loop never serializes a large
value and a value that cannot cross a process boundary as JSON never has to.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["LIMIT", "Kept", "decode", "encode", "size_text"]

LIMIT = 1_048_576  # the default `result_max_bytes`

# (JSON text or None, why it was not kept or None)
Kept = tuple[str | None, str | None]


def encode(value: Any, limit: int) -> Kept:
    """`value` as compact JSON, or `None` and the reason it is not kept.

    Strict JSON (no NaN or Infinity, which a browser's `JSON.parse` refuses). A value
    over `limit` bytes is not kept: its size is reported instead.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return None, (
            f"result not kept: {type(value).__qualname__} is not JSON-serializable ({exc}); "
            "return plain JSON data (dict, list, str, int, float, bool, None)"
        )
    size = len(text)  # ensure_ascii: one byte per character
    if size > limit:
        return None, (
            f"result not kept: too large ({size_text(size)} of JSON, over result_max_bytes="
            f"{limit}); raise OFFLOAD_RESULT_MAX_BYTES, or store the data elsewhere and "
            "return a reference to it"
        )
    return text, None


def decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def size_text(size: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
