"""The processes a process started, found through Linux's /proc.

A task's children normally share its worker's process group and die with it (`killpg`).
One that starts a session of its own (`subprocess.Popen(..., start_new_session=True)`,
a daemon) leaves that group; it is still a descendant by parent pid while the worker
lives, so a timeout finds it here before the worker is killed. Elsewhere (no /proc)
nothing is found.

Imported by process workers: it must stay cheap (only `os`).
"""

from __future__ import annotations

import os

__all__ = ["descendants", "kill_all"]


def descendants(pid: int) -> list[int]:
    """The pids of every living descendant of `pid` (children first), or [] without
    /proc."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as file:
                stat = file.read()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split(b" ", 2)
        if len(fields) >= 2 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(), ()):
            found.append(child)
            queue.append(child)
    return found


def kill_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:  # noqa: PERF203 - ended meanwhile, or not ours
            pass
