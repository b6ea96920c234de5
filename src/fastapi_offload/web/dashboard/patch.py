"""What a dashboard stream sends after its first snapshot: only what changed.

A snapshot is ~40 KB with 50 tasks; sent whole twice a second to each of 1,000 open
pages, encoding it alone held the event loop for most of every second. A `patch` names
the task rows that are new or changed, the ids that left, the new order of the rows
when it changed, and the other keys of the snapshot that changed. The page applies it
to the snapshot it holds (`assets/dashboard.js`).

Many streams poll the same cached snapshot, so the text of a patch is computed once per
pair of snapshots and shared (`Patches`).
"""

from __future__ import annotations

from typing import Any

from ..sse import encode, event

__all__ = ["Patches", "diff"]

# Recomputed by the page from `now`: a running task's duration alone is no change.
_VOLATILE = ("duration",)
_PAIRS_KEPT = 8  # distinct (from, to) pairs: the streams fall into a few poll phases


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """The patch from `old` to `new`; `None` when nothing but the clock changed and no
    shown task is live (a live one's duration moves with the clock)."""
    patch: dict[str, Any] = {}
    changed = {
        key: value
        for key, value in new.items()
        if key not in ("now", "tasks") and old.get(key) != value
    }
    if changed:
        patch["set"] = changed
    before = {task["id"]: task for task in old["tasks"]}
    rows = [task for task in new["tasks"] if _differs(before.get(task["id"]), task)]
    if rows:
        patch["tasks"] = rows
    ids = [task["id"] for task in new["tasks"]]
    if ids != [task["id"] for task in old["tasks"]]:
        patch["order"] = ids
        gone = before.keys() - set(ids)
        if gone:
            patch["removed"] = sorted(gone)
    if not patch and not any(task["live"] for task in new["tasks"]):
        return None
    patch["now"] = new["now"]
    return patch


def _differs(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    if old is None:
        return True
    return any(new[key] != old.get(key) for key in new if key not in _VOLATILE)


class Patches:
    """The event text of each patch, computed once per pair of snapshots."""

    def __init__(self) -> None:
        # Keyed by the snapshots' ids; the snapshots are kept with the text, so an id
        # is never reused while its entry lives.
        self._texts: dict[tuple[int, int], tuple[Any, Any, str | None]] = {}

    def event(self, old: dict[str, Any], new: dict[str, Any]) -> str | None:
        key = (id(old), id(new))
        found = self._texts.get(key)
        if found is None:
            patch = diff(old, new)
            text = None if patch is None else event("patch", encode(patch))
            if len(self._texts) >= _PAIRS_KEPT:
                del self._texts[next(iter(self._texts))]
            found = self._texts[key] = (old, new, text)
        return found[2]
