"""Who holds a lease in a durable store, and whether that process is known to be gone.

An owner id is `host:pid:token`, followed on Linux by `:boot:pidns:start`: the kernel's
boot id, the inode of the process's pid namespace and the process's start time (clock
ticks after boot, field 22 of `/proc/<pid>/stat`). Together these name one process for
certain: a pid is reused, but never by a process that started at the same tick in the
same pid namespace of the same boot. So a process that reads an owner id of its own
host, boot and pid namespace can tell that its process is gone (no such pid, a zombie,
or a pid reused by a later process) and reclaim its tasks at once instead of waiting
out the lease. Every other owner (another host or boot, another container's pid
namespace, an id without the suffix, anything unparseable) keeps its lease: a process
it cannot see may still be running.

The random token is not what identifies the process (it cannot be checked from outside):
it tells apart the runtimes of one process (an app started twice, tests).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "OWNER_ID_MAX",
    "gone_owners",
    "new_owner_id",
    "owner_id_of_this_process",
    "process_label",
]

# Owner ids are read back from the store, which others can write: bounded before parsing.
# A hostname is at most 64 characters on Linux (255 anywhere), the suffix about 80.
OWNER_ID_MAX = 400
_OWNER = re.compile(
    r"(?P<host>[^\x00-\x1f]{1,255}):(?P<pid>[1-9][0-9]{0,9}):[0-9a-f]{8}"
    r":(?P<boot>[0-9a-f]{32}):(?P<ns>[0-9]{1,20}):(?P<start>[0-9]{1,20})"
)
_FORMED_BY = re.compile(r".{1,255}:(?P<pid>[1-9][0-9]{0,9}):[0-9a-f]{8}(?::.*)?")
# Any owner id's `host:pid` (the token and the suffix after it vary): what names its
# process on a page.
_LABELLED = re.compile(r"(?P<label>[^:]{1,255}:[0-9]{1,10}):[^:]{1,64}(?::[^:]*){0,3}")
_BOOT_ID = "/proc/sys/kernel/random/boot_id"
# One process at most is judged this many times per call: a store full of owner ids is
# not a way to make a reclaim pass read thousands of /proc files.
_MOST = 100


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a process is visible: its host, kernel boot and pid namespace."""

    host: str
    boot: str
    pid_ns: int


def new_owner_id() -> str:
    """A new owner id for this process (a new token each call): with the suffix that
    lets processes of this host recognise it as gone, where it can be formed."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    place, start = _here(), _start_time("self", os.getpid())
    if place is None or start is None:
        return owner  # lease-only: other processes cannot tell whether this one is gone
    suffixed = f"{owner}:{place.boot}:{place.pid_ns}:{start}"
    # A hostname the pattern refuses (a control character) would make the id unreadable.
    return suffixed if _OWNER.fullmatch(suffixed) else owner


def owner_id_of_this_process(owner: str) -> str:
    """`owner`, or a new owner id if `owner` was formed by another process: an `Offload`
    built before a fork (gunicorn `--preload`, a daemon's double fork) must not lease its
    tasks under its parent's pid, which peers would judge (and the parent may exit)."""
    found = _FORMED_BY.fullmatch(owner) if len(owner) <= OWNER_ID_MAX else None
    if found is None or int(found["pid"]) == os.getpid():
        return owner  # ours, or not an id this module forms (given by hand): kept
    return new_owner_id()


def process_label(owner: object) -> str | None:
    """`host:pid` of an owner id read back from a store, or None if it is not one."""
    if not isinstance(owner, str) or len(owner) > OWNER_ID_MAX:
        return None
    found = _LABELLED.fullmatch(owner)
    return found["label"] if found else None


def gone_owners(owners: Iterable[str]) -> list[str]:
    """Those of `owners` whose process is known to be gone: owner ids of this host,
    boot and pid namespace whose pid no longer runs the process that formed them."""
    place = _here()
    if place is None:
        return []  # not Linux, or /proc is not this process's: every owner keeps its lease
    gone = []
    for owner in list(owners)[:_MOST]:
        if len(owner) > OWNER_ID_MAX or not (found := _OWNER.fullmatch(owner)):
            continue
        seen = _Place(found["host"], found["boot"], int(found["ns"]))
        if seen == place and _is_gone(int(found["pid"]), int(found["start"])):
            gone.append(owner)
    return gone


def _here() -> _Place | None:
    # Not cached: a forked child has its own pid, and reading two small files once per
    # reclaim pass costs microseconds.
    try:
        with open(_BOOT_ID) as file:
            boot = file.read(64).strip().replace("-", "")
        pid_ns = os.stat("/proc/self/ns/pid").st_ino
        with open("/proc/self/stat") as file:
            own = file.read(1024).split(" ", 1)[0]
    except (OSError, ValueError):
        return None
    # A /proc mounted from another pid namespace would show other processes under our
    # pids (and `os.kill` would disagree with it): then nothing can be judged.
    if own != str(os.getpid()) or not re.fullmatch(r"[0-9a-f]{32}", boot):
        return None
    return _Place(socket.gethostname(), boot, pid_ns)


def _start_time(which: str, pid: int) -> int | None:
    """The start time of process `which` (a pid or "self"), or None if unreadable."""
    stat = _stat(which)
    if stat is None or stat[0] != pid:
        return None
    return stat[3]


def _stat(which: str) -> tuple[int, str, int, int] | None:
    """pid, state, thread count and start time from `/proc/<which>/stat`; None if the
    file is absent or not as expected (raises nothing)."""
    try:
        with open(f"/proc/{which}/stat", "rb") as file:
            text = file.read(4096).decode("ascii", "replace")
        # The command name (field 2) is in parentheses and may hold spaces and ")".
        head, _, rest = text.rpartition(")")
        fields = rest.split()
        return int(head.split(" (", 1)[0]), fields[0], int(fields[17]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _is_gone(pid: int, start: int) -> bool:
    stat = _stat(str(pid))
    if stat is None:
        # No /proc entry: gone if the kernel agrees. A process hidden from us (`hidepid`
        # on /proc) still answers `os.kill` (PermissionError): keep its lease.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    _, state, threads, started = stat
    if started != start:
        return True  # the pid was reused by a later process: the owner's is gone
    # A zombie (exited, not yet reaped by its parent) runs no task. A zombie leader with
    # threads left would still run code: only a whole process that exited counts.
    return state in ("Z", "X") and threads <= 1
