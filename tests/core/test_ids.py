"""Task ids (`core/ids.py`)."""

from __future__ import annotations

import os
import re
import time

from fastapi_offload.core.ids import IdSource


def test_ids_are_32_hex_digits_and_do_not_repeat() -> None:
    new_id = IdSource()
    ids = {new_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    # A pre-fork server (gunicorn) forks after the app made ids: the child must read
    # fresh random bytes, not hand out the ones its parent hands out next.
    new_id = IdSource()
    new_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child != new_id()


def test_ids_are_made_in_order_of_time_with_80_random_bits() -> None:
    # A durable store indexes rows by id: ids in order land in the same index page.
    new_id = IdSource()
    before = time.time_ns() // 1_000_000
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(first[:12], 16) < int(second[:12], 16) <= after
    assert len({new_id()[12:] for _ in range(1000)}) == 1000  # the random part
