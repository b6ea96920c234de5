"""The slot board: a small file shared by the process lane (`lanes.process.lane`) and its
workers (`lanes.process.worker`), one slot per running attempt. A worker writes the pid
of the process group running the call and its progress reports there; the parent reads
them without a round trip per call, to kill a task's processes and to pass progress on.

The worker side (`SlotContext`, `open_board`) must stay cheap to import: `tempfile` is
imported by the parent side only, when it makes a board.
"""

from __future__ import annotations

import itertools
import mmap
import os
import signal
import struct
import weakref

from ..._context import TaskContext

__all__ = [
    "PID",
    "SLOT",
    "Board",
    "SlotContext",
    "board_directory",
    "open_board",
    "read_report",
]

# The slot board: a small file shared by the parent lane and its workers, SLOT bytes per
# running attempt (the parent hands out slot indexes; at most `capacity` are in use).
# Four cache lines per slot, so workers writing their own slots do not contend.
#
#   offset  size  field     writer   meaning
#   0       4     pid       worker   pid (= process group) running the call; 0: none
#   4       4     seq       worker   seqlock counter around progress + message (odd: mid-write)
#   8       8     progress  worker   fraction done, float64
#   16      2     (spare)
#   18      2     msg_len   worker   length of the message in bytes
#   20      236   message   worker   the progress message, UTF-8
#
# Native byte order and alignment: both sides are one machine.
SLOT = 256
PID = struct.Struct("=i")
SEQ = struct.Struct("=I")
REPORT = struct.Struct("=d2xH")  # progress, msg_len (at offset 8)
MESSAGE_AT, MESSAGE_BYTES = 20, SLOT - 20


def read_report(board: mmap.mmap, slot: int) -> tuple[int, float, str | None] | None:
    """The slot's last progress report as (seq, fraction, message), or `None` if none
    was made or a write is under way (the caller reads again on its next round)."""
    offset = slot * SLOT
    (seq,) = SEQ.unpack_from(board, offset + 4)
    if seq == 0 or seq & 1:
        return None
    fraction, length = REPORT.unpack_from(board, offset + 8)
    start = offset + MESSAGE_AT
    raw = board[start : start + min(length, MESSAGE_BYTES)]
    if SEQ.unpack_from(board, offset + 4)[0] != seq:
        return None  # written meanwhile
    message = raw.decode("utf-8", "replace") if length != 0xFFFF else None
    return seq, fraction, message


class SlotContext(TaskContext):
    """`report_progress` in a worker: written to the attempt's slot for the parent."""

    __slots__ = ("_board", "_offset", "_seq")

    def __init__(self, task_id: str, task_name: str, board: mmap.mmap | None, slot: int) -> None:
        super().__init__(task_id, task_name)
        self._board, self._offset, self._seq = board, slot * SLOT, 0

    def publish(self, fraction: float, message: str | None) -> None:
        board = self._board
        if board is None:
            return  # no slot: the last report still travels back with the outcome
        offset = self._offset
        data = b"" if message is None else message.encode()[:MESSAGE_BYTES]
        self._seq += 1  # odd: a reader skips this slot until the write is done
        SEQ.pack_into(board, offset + 4, self._seq)
        REPORT.pack_into(board, offset + 8, fraction, 0xFFFF if message is None else len(data))
        board[offset + MESSAGE_AT : offset + MESSAGE_AT + len(data)] = data
        self._seq += 1
        SEQ.pack_into(board, offset + 4, self._seq)

    def clear(self) -> None:
        if self._board is not None:
            SEQ.pack_into(self._board, self._offset + 4, 0)


_boards: dict[str, mmap.mmap] = {}  # a worker's mappings, by path


def open_board(path: str) -> mmap.mmap | None:
    """The worker's mapping of the board at `path` (`None`: gone)."""
    # Mapped once per worker and lane: the parent never resizes the file.
    board = _boards.get(path)
    if board is None:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:  # gone (the lane was closed): the call runs without a slot
            return None
        try:
            board = _boards[path] = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
    return board


# Boards are named fastapi-offload-<parent pid>-<counter>-<random>.slots.
_PREFIX = "fastapi-offload-"
_SUFFIX = ".slots"
_names = itertools.count()


class Board:
    """The parent's side of the slot board: the file, its mapping and the free slots."""

    def __init__(self, slots: int) -> None:
        size = slots * SLOT
        # The pid and a counter in the name: a worker maps a board once per path, so a
        # path must never name a second board while the parent lives.
        prefix = f"{_PREFIX}{os.getpid()}-{next(_names)}-"
        directory = board_directory()
        _sweep(directory)
        import tempfile  # the parent's side only (see the module's docstring)

        fd, self.path = tempfile.mkstemp(prefix=prefix, suffix=_SUFFIX, dir=directory)
        # Unlinked when the lane is collected or at interpreter exit, not once the first
        # worker has opened it: workers keep starting (after a crash, a timeout or anyio's
        # idle pruning) and each opens the board by path. A parent killed by a signal
        # runs no exit hook: the next lane's sweep removes its board.
        self._unlink = weakref.finalize(self, _unlink, self.path)
        try:
            os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.free = list(range(slots - 1, -1, -1))

    def take(self) -> int:
        # More attempts than slots only if someone raised the limiter's tokens: such an
        # attempt runs untracked (its worker is still killed, its children are not).
        return self.free.pop() if self.free else -1

    def give_back(self, slot: int) -> None:
        if slot < 0:
            return
        offset = slot * SLOT
        SEQ.pack_into(self.map, offset + 4, 0)  # the next attempt's reports only
        (pid,) = PID.unpack_from(self.map, offset)
        if pid:
            # The worker writes its pid when the call starts and clears it when the call
            # returns; still set, the call never returned: anyio has killed and reaped
            # the worker (cancellation) or it died (crash). Its group outlives it while
            # any member lives, and its id cannot be reused until then.
            PID.pack_into(self.map, offset, 0)
            _kill_group(pid)
        self.free.append(slot)


def board_directory() -> str:
    # /dev/shm is memory: the board never touches a disk. Elsewhere, the temp dir.
    shm = "/dev/shm"
    if os.access(shm, os.W_OK):
        return shm
    import tempfile

    return tempfile.gettempdir()


def _sweep(directory: str) -> None:
    # Boards whose parent died by a signal (no exit hook ran), removed by the next lane
    # so that restarts (OOM kills, `docker kill`) do not pile files up in /dev/shm.
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
            owner = name[len(_PREFIX) :].partition("-")[0]
            if owner.isdigit() and not _alive(int(owner)):
                _unlink(os.path.join(directory, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # gone already, or another user's (sticky /dev/shm)
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # no member left, or not ours any more
        pass
