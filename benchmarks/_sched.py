"""EEVDF slices (Linux 6.12+) for the priority experiments: `sched_setattr` has no
wrapper in `os`. Unprivileged: a process may set the slice of its own threads and of
processes of the same user, at their current nice value."""

from __future__ import annotations

import ctypes
import os
import struct
from pathlib import Path

# sched_setattr / sched_getattr per machine.
_CALLS = {"x86_64": (314, 315), "aarch64": (274, 275), "riscv64": (274, 275)}
_ATTR = struct.Struct("=IIQiIQQQ")  # size policy flags nice priority runtime deadline period
LONGEST_NS = 100_000_000  # the kernel's bounds for a slice: 0.1 ms to 100 ms
SHORTEST_NS = 100_000


def _calls() -> tuple[int, int]:
    calls = _CALLS.get(os.uname().machine)
    if calls is None:
        raise OSError(f"no sched_setattr number for {os.uname().machine}")
    return calls


def set_slice(nanoseconds: int, pid: int = 0) -> None:
    """Give `pid` (0: this thread) a slice of `nanoseconds` at its nice value, SCHED_OTHER."""
    nice = os.getpriority(os.PRIO_PROCESS, pid)
    attr = ctypes.create_string_buffer(
        _ATTR.pack(_ATTR.size, os.SCHED_OTHER, 0, nice, 0, nanoseconds, 0, 0), _ATTR.size
    )
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_calls()[0], pid, attr, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def get_slice(pid: int = 0) -> int:
    """The slice of `pid` in nanoseconds (on kernels before 6.12: 0)."""
    attr = ctypes.create_string_buffer(_ATTR.size)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_calls()[1], pid, attr, _ATTR.size, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    runtime: int = _ATTR.unpack(attr.raw)[5]
    return runtime


def workers() -> list[int]:
    """Pids of this process's anyio worker processes, from /proc (the busy loops of
    `benchmarks._tenants` are children too, and left alone)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:  # gone meanwhile
                continue
            if b"anyio.to_process" in argv:
                found.append(int(pid))
    return found
