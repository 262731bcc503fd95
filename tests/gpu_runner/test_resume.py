"""How a redelivered batch is resumed: the ledger's suspects and quarantine sort the items
still to run (pure policy, no Redis), and an item is poison at ``poison_strikes``; a part
that fails without killing its runner (a store outage) is no one's suspect (real Redis)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from core.config import Settings
from gpu_runner.infer import Inferred
from gpu_runner.prepare import Prepared
from gpu_runner.redelivery import Ledger, RedeliveryLedger, item_key
from gpu_runner.resume import Resumer, partition
from schemas.bus import Batch, BatchItem
from store.results.base import StoreError


def items(*keys: tuple[str, int]) -> list[BatchItem]:
    return [BatchItem(job, index, [101, 102]) for job, index in keys]


def keys(part: list[BatchItem]) -> list[tuple[str, int]]:
    return [(it.job_id, it.index) for it in part]


def test_an_ordinary_crash_leaves_one_suspect_part_and_the_rest_clear() -> None:
    todo = items(("a", 0), ("a", 1), ("b", 0), ("b", 1))
    parts = partition(todo, Ledger(running=[("a", 1), ("b", 0)]), poison_strikes=3)
    assert keys(parts.clear) == [("a", 0), ("b", 1)]
    assert keys(parts.suspect) == [("a", 1), ("b", 0)]
    assert parts.quarantined == [] and parts.poison == []


def test_strikes_quarantine_an_item_until_poison_strikes_make_it_poison() -> None:
    todo = items(("a", 0), ("a", 1), ("a", 2))
    ledger = Ledger(running=[("a", 0)], quarantine={item_key("a", 0): 2, item_key("a", 1): 3})
    parts = partition(todo, ledger, poison_strikes=3)
    assert keys(parts.quarantined) == [("a", 0)]  # struck: never a mere suspect again
    assert keys(parts.poison) == [("a", 1)]
    assert keys(parts.clear) == [("a", 2)] and parts.suspect == []
    assert keys(partition(todo, ledger, poison_strikes=2).poison) == [("a", 0), ("a", 1)]


def test_every_item_lands_in_exactly_one_part() -> None:
    todo = items(*[("j", i) for i in range(12)])
    ledger = Ledger(running=[("j", i) for i in range(0, 12, 3)],
                    quarantine={item_key("j", i): i % 5 for i in range(12)})
    parts = partition(todo, ledger, poison_strikes=3)
    placed = parts.clear + parts.suspect + parts.quarantined + parts.poison
    assert sorted(keys(placed)) == sorted(keys(todo))


class _Triage:
    async def sort(self, batch, now):
        return [], list(batch.items)


class _Inference:
    async def run(self, msg, batch, part):
        return Inferred([("record", it.index) for it in part])


class _FailingWriteBack:
    """The result store is down: every commit of inferred records fails (transiently)."""

    def __init__(self) -> None:
        self.commits = 0

    async def commit(self, records, now, usage=None):
        if records:
            self.commits += 1
            raise StoreError("the result store is unavailable (simulated outage)")

    async def not_counted(self, items):
        return items


async def test_a_store_outage_during_a_resumed_part_makes_no_suspect_and_no_strike(
        redis_url) -> None:
    redis = Redis.from_url(redis_url)
    try:
        ledger = RedeliveryLedger(redis)
        batch = Batch(batch_id="b1", model="minilm", model_version=1, bucket=16,
                      items=items(("a", 0), ("a", 1)))
        resumer = Resumer(Settings(), ledger, _FailingWriteBack(), _Triage(), _Inference(),
                          dead_letters=None)
        for _ in range(4):  # four deliveries in a row meet the outage
            with pytest.raises(StoreError):
                await resumer.run(Prepared(msg=None, batch=batch, deliveries=2, resume=True))
            after = await ledger.load("b1")
            assert after.running == [] and after.quarantine == {}
    finally:
        await redis.aclose()
