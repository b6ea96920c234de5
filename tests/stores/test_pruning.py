"""`stores.pruning`: which batches of a durable store prune, and the bound that keeps."""

from __future__ import annotations

import pytest

from fastapi_offload._models import TaskState
from fastapi_offload.stores.pruning import PRUNE_EVERY, PruneSchedule

from .helpers import Durable, record

T = 1_000_000.0  # a time (the schedule is given the time: no sleeping here)


def test_a_small_store_prunes_with_every_batch_that_settles_a_row() -> None:
    schedule = PruneSchedule(capacity=100)
    assert schedule.due(1, T, deleted=False, renew=False)
    assert schedule.due(1, T + 0.01, deleted=False, renew=False)
    assert not schedule.due(0, T + 0.02, deleted=False, renew=False)  # only admissions


def test_a_large_store_prunes_once_a_quota_of_rows_settled() -> None:
    schedule = PruneSchedule(capacity=10_000)  # quota: 125 rows
    assert schedule.due(1, T, deleted=False, renew=False)  # the first batch prunes
    for i in range(1, 21):  # 120 rows in 20 batches, within a second
        assert not schedule.due(6, T + i / 100, deleted=False, renew=False)
    assert schedule.due(6, T + 0.3, deleted=False, renew=False)  # 126: the quota
    assert not schedule.due(6, T + 0.31, deleted=False, renew=False)  # counted again


def test_a_large_store_prunes_at_least_every_prune_every_while_rows_settle() -> None:
    schedule = PruneSchedule(capacity=10_000)
    assert schedule.due(1, T, deleted=False, renew=False)
    assert not schedule.due(0, T + PRUNE_EVERY + 1, deleted=False, renew=False)  # none settled
    assert not schedule.due(1, T + PRUNE_EVERY / 2, deleted=False, renew=False)
    assert schedule.due(1, T + PRUNE_EVERY, deleted=False, renew=False)


def test_a_delete_or_a_renewal_always_prunes() -> None:
    schedule = PruneSchedule(capacity=10_000)
    assert schedule.due(0, T, deleted=True, renew=False)
    assert schedule.due(0, T + 0.01, deleted=False, renew=True)


@pytest.mark.anyio
async def test_a_store_stays_within_capacity_slack_and_quota(durable: Durable) -> None:
    # capacity 400: a slack of 20 before pruning by count, and a quota of 5 settled rows
    # between two prunes; one settled row per batch, as a slow stream of tasks writes.
    store = await durable.open("a", capacity=400)
    most = 0
    for i in range(460):
        store.put(record(f"d{i}", TaskState.SUCCEEDED))
        await store.flush()
        if i >= 400:
            most = max(most, durable.task_count())
    assert most <= 400 + 20 + 5  # pruned by count, never past the bound
    assert await store.get("d0") is None and await store.get("d459") is not None
