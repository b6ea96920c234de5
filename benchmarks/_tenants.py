"""Other load on the host: `python -m benchmarks._tenants N SCOPE -- ARGV...`.

Starts N busy-loop processes at nice 0, then execs ARGV (the server under test). SCOPE
says where the Linux scheduler puts them:

- `same`: in the server's session, hence its autogroup (and cgroup): other processes of
  the same container or service, against which the workers' nice value counts;
- `own`: each in a session of its own, hence its own autogroup: other tenants of the host,
  against which the server's group as a whole is weighed (nice counts only inside it).

The busy loops die with the server: they are in its process group (`same`), or get
SIGKILL when it exits (`PR_SET_PDEATHSIG` on Linux, a parent check elsewhere).
"""

from __future__ import annotations

import os
import signal
import sys

SCOPES = ("same", "own")


def _spin(parent: int, own_session: bool) -> None:
    if own_session:
        os.setsid()
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    n = 0
    while True:
        n += 1
        if n % 1_000_000 == 0 and os.getppid() != parent:
            os._exit(0)


def main(argv: list[str]) -> None:
    count, scope, sep, *command = argv
    if sep != "--" or scope not in SCOPES or not command:
        raise SystemExit(__doc__.splitlines()[0])
    parent = os.getpid()
    for _ in range(int(count)):
        if os.fork() == 0:
            try:
                _spin(parent, scope == "own")
            finally:
                os._exit(0)
    # The pid stays the server's: the harness stops it and kills its group as before.
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
