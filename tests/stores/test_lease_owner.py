"""Owner ids: a process of this host, boot and pid namespace that is gone is recognised;
every owner it cannot see (another host, boot or container, an old or garbled id)
keeps its lease."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from fastapi_offload.stores.lease_owner import (
    OWNER_ID_MAX,
    gone_owners,
    new_owner_id,
    owner_id_of_this_process,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="boot ids and /proc: elsewhere, leases only"
)
FORM_AND_WAIT = (
    "from fastapi_offload.stores.lease_owner import new_owner_id; import sys, time; "
    "print(new_owner_id(), flush=True); time.sleep(60)"
)


@pytest.fixture
def child() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A process that formed its own owner id, as a worker process does at start-up."""
    process = subprocess.Popen(
        [sys.executable, "-c", FORM_AND_WAIT], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    owner = process.stdout.readline().strip()
    yield process, owner
    process.kill()
    process.wait()
    process.stdout.close()


def with_field(owner: str, index: int, value: str) -> str:
    """`owner` with one of its six fields (host, pid, token, boot, pid ns, start) changed."""
    fields = owner.rsplit(":", 5)
    fields[index] = value
    return ":".join(fields)


def test_an_owner_id_names_this_host_boot_pid_namespace_and_start_time() -> None:
    owner = new_owner_id()
    _, pid, token, boot, pid_ns, start = owner.rsplit(":", 5)
    with open("/proc/sys/kernel/random/boot_id") as file:
        assert boot == file.read().strip().replace("-", "")
    assert pid.isdigit() and len(token) == 8 and pid_ns.isdigit() and start.isdigit()
    assert new_owner_id() != owner  # one token per runtime: two in one process differ
    assert gone_owners([owner]) == []  # this process runs


def test_a_running_process_keeps_its_lease_and_a_killed_one_is_gone(
    child: tuple[subprocess.Popen[str], str],
) -> None:
    process, owner = child
    assert gone_owners([owner]) == []
    process.kill()  # not reaped (no wait yet): a zombie runs no task either
    deadline = time.monotonic() + 5
    while gone_owners([owner]) != [owner] and time.monotonic() < deadline:
        time.sleep(0.01)  # the kill takes effect a moment later
    assert gone_owners([owner]) == [owner], "a zombie was taken for a running process"
    process.wait()
    assert gone_owners([owner]) == [owner]


def test_a_reused_pid_does_not_keep_the_lease_of_the_process_that_had_it(
    child: tuple[subprocess.Popen[str], str],
) -> None:
    _, owner = child
    earlier = with_field(owner, 5, str(int(owner.rsplit(":", 1)[1]) - 1))
    assert gone_owners([earlier]) == [earlier]  # same pid, another start: that one is gone


@pytest.mark.parametrize(
    ("field", "value"),
    [(0, "another-host"), (3, "0" * 32), (4, "1"), (0, "vm\x01")],
    ids=["another host", "another boot", "another pid namespace", "a control character"],
)
def test_an_owner_this_process_cannot_see_keeps_its_lease(
    child: tuple[subprocess.Popen[str], str], field: int, value: str
) -> None:
    process, owner = child
    process.kill()
    process.wait()
    assert gone_owners([owner]) == [owner]
    foreign = with_field(owner, field, value)
    assert gone_owners([foreign]) == [], foreign


def test_ids_that_cannot_be_parsed_keep_their_lease(
    child: tuple[subprocess.Popen[str], str],
) -> None:
    process, owner = child
    process.kill()
    process.wait()
    host, pid, token = owner.split(":")[:3]
    unreadable = [
        f"{host}:{pid}:{token}",  # the id of an older version: no boot id
        owner + ":1",
        with_field(owner, 1, "0"),
        with_field(owner, 1, "-1"),
        with_field(owner, 5, "x"),
        "x" * (OWNER_ID_MAX - len(owner) + 1) + owner,  # too long to be read at all
        "",
        "worker-1",
    ]
    assert gone_owners(unreadable) == []


def test_an_owner_id_formed_before_a_fork_is_replaced_by_the_process_that_uses_it(
    child: tuple[subprocess.Popen[str], str],
) -> None:
    # As a gunicorn --preload worker would hold its parent's id: the parent may exit
    # while the worker runs tasks, and peers would take that for the worker being gone.
    _, parents = child
    own = owner_id_of_this_process(parents)
    assert own != parents and own.split(":")[1] == str(os.getpid())
    assert owner_id_of_this_process(own) == own
    assert owner_id_of_this_process("worker-1") == "worker-1"  # given by hand: kept


def test_the_dashboard_labels_an_owner_by_host_and_pid_whatever_its_suffix() -> None:
    from fastapi_offload.stores.lease_owner import new_owner_id
    from fastapi_offload.stores.peers import label_of

    here = f"{socket.gethostname()}:{os.getpid()}"
    assert label_of(new_owner_id()) == here  # with the boot/pidns/start suffix on Linux
    assert label_of(f"{here}:0123abcd") == here  # an id without it (older versions)
    assert label_of("no owner") is None and label_of("h:1:" + "f" * 500) is None
