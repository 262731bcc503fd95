"""The batch former: buckets never mix, padding only to the bucket, fire triggers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models.config import ModelConfig
from scheduler.former import BatchFormer, FireReason, PendingItem, queue_delays
from schemas.states import Priority

BUCKETS = [16, 32, 64, 128, 256]


def former(**kw) -> BatchFormer:
    args = dict(max_batch_tokens=2048, max_batch_size=64,
                max_queue_delay=queue_delays(0.05, 4.0))
    args.update(kw)
    return BatchFormer(BUCKETS, **args)


def item(i: int, length: int, t: float = 0.0, priority: Priority = Priority.BATCH
         ) -> PendingItem:
    return PendingItem("job", i, list(range(length)), priority, t)


def test_an_item_goes_to_the_smallest_bucket_that_fits() -> None:
    f = former()
    assert [f.bucket_for(n) for n in (1, 16, 17, 64, 65, 256)] == [16, 16, 32, 64, 128, 256]


def test_capacity_is_the_token_budget_or_the_item_cap_whichever_is_smaller() -> None:
    f = former()
    assert [f.capacity(b) for b in BUCKETS] == [64, 64, 32, 16, 8]


def test_the_former_and_the_model_config_share_one_capacity_rule() -> None:
    config = ModelConfig(name="m", version=1, output_dim=4, max_seq_len=256, buckets=BUCKETS,
                         max_batch_tokens=1000, max_batch_size=40)
    f = former(max_batch_tokens=1000, max_batch_size=40)
    assert [f.capacity(b) for b in BUCKETS] == [config.max_batch_for(b) for b in BUCKETS]


def test_a_former_knows_when_some_bucket_holds_a_full_batch() -> None:
    f = former()
    for i in range(7):  # bucket 256 holds 8
        f.add(item(i, 200))
    for i in range(63):  # bucket 16 holds 64
        f.add(item(100 + i, 10))
    assert not f.any_full()
    f.add(item(7, 200))
    assert f.any_full()
    f.pop_ready(0.0, limit=1)
    assert not f.any_full()


def test_batch_work_waits_the_factor_times_longer_than_interactive() -> None:
    assert queue_delays(0.05, 4.0) == {Priority.INTERACTIVE: 0.05, Priority.BATCH: 0.2}


def test_a_full_bucket_fires_at_once_without_waiting() -> None:
    f = former()
    for i in range(8):
        f.add(item(i, 200))
    [batch] = f.pop_ready(now=0.0)
    assert batch.reason is FireReason.FULL and batch.bucket == 256 and len(batch.items) == 8
    assert len(f) == 0


def test_a_lone_item_fires_after_max_queue_delay_and_not_before() -> None:
    f = former()
    f.add(item(0, 10, t=100.0, priority=Priority.INTERACTIVE))
    assert f.pop_ready(now=100.049) == []
    assert f.next_deadline() == 100.05
    [batch] = f.pop_ready(now=100.05)
    assert batch.reason is FireReason.DELAY and [i.index for i in batch.items] == [0]


def test_batch_priority_waits_longer_than_interactive() -> None:
    f = former()
    f.add(item(0, 10, t=0.0, priority=Priority.BATCH))
    assert f.pop_ready(now=0.1) == []
    assert len(f.pop_ready(now=0.2)) == 1


def test_interactive_items_go_first_within_a_bucket() -> None:
    f = former(max_batch_size=4)
    for i in range(6):
        f.add(item(i, 10, t=0.0, priority=Priority.BATCH))
    f.add(item(99, 10, t=1.0, priority=Priority.INTERACTIVE))
    first = f.pop_ready(now=1.0)[0]
    assert first.items[0].index == 99


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=256), min_size=0, max_size=400),
       st.integers(min_value=1, max_value=64), st.sampled_from([256, 512, 2048, 8192]))
def test_every_item_ends_in_exactly_one_batch_of_its_bucket(lengths, cap, budget) -> None:
    f = former(max_batch_size=cap, max_batch_tokens=budget)
    for i, n in enumerate(lengths):
        f.add(item(i, n, t=float(i) * 0.001))
    batches = f.pop_ready(now=0.0) + f.pop_ready(now=1e9, flush=True)
    seen = [it.index for b in batches for it in b.items]
    assert sorted(seen) == list(range(len(lengths)))  # exactly once each
    for b in batches:
        assert all(f.bucket_for(it.length) == b.bucket for it in b.items)  # no mixing
        assert b.padded_tokens == b.bucket * len(b.items)  # padded only to its bucket
        assert len(b.items) <= max(1, min(cap, budget // b.bucket))
    assert len(f) == 0


def test_late_formation_forms_no_more_batches_than_the_limit_and_urgent_work_first() -> None:
    f = former(max_batch_size=4)
    for i in range(8):
        f.add(item(i, 10, t=0.0))  # two full batches of the 16 bucket
    for i in range(8, 12):
        f.add(item(i, 100, t=0.5))  # one full batch of the 128 bucket
    f.add(item(99, 40, t=1.0, priority=Priority.INTERACTIVE))  # lone, overdue at 1.05
    first = f.pop_ready(now=1.1, limit=1)
    assert [it.index for it in first[0].items] == [99]  # interactive goes first
    rest = f.pop_ready(now=1.1, limit=2)
    assert [b.bucket for b in rest] == [16, 16]  # then the oldest heads
    assert len(f) == 4  # the 128 batch waits for credit
    assert f.pop_ready(now=1.1, limit=0) == []


def test_the_former_counts_what_it_holds_per_priority() -> None:
    f = former(max_batch_size=4)
    for i in range(5):
        f.add(item(i, 10, priority=Priority.BATCH))
    f.add(item(9, 10, priority=Priority.INTERACTIVE))
    assert (f.count(Priority.BATCH), f.count(Priority.INTERACTIVE)) == (5, 1)
    f.pop_ready(now=0.0, limit=1)  # interactive first, then 3 batch items
    assert (f.count(Priority.BATCH), f.count(Priority.INTERACTIVE), len(f)) == (2, 0, 2)


def test_a_batch_that_could_not_be_published_is_formed_again_first() -> None:
    f = former(max_batch_size=4)
    for i in range(6):
        f.add(item(i, 10, t=float(i)))
    [first] = f.pop_ready(now=0.0, limit=1)
    f.requeue(first.items)
    assert len(f) == 6 and f.count(Priority.BATCH) == 6
    [again] = f.pop_ready(now=0.0, limit=1)
    assert [it.index for it in again.items] == [it.index for it in first.items]


def test_a_hungry_runner_gets_the_fullest_partial_bucket_before_any_deadline() -> None:
    f = former()
    for i in range(3):
        f.add(item(i, 10, t=0.0))  # 3 of 64 in the 16 bucket
    for i in range(3, 9):
        f.add(item(i, 100, t=0.0))  # 6 of 16 in the 128 bucket: the fullest
    assert f.pop_ready(now=0.01, limit=1) == []  # not hungry: wait for the deadline
    [batch] = f.pop_ready(now=0.01, limit=1, hungry=True)
    assert batch.reason is FireReason.HUNGRY and batch.bucket == 128 and len(batch.items) == 6


def test_hunger_never_puts_a_partial_batch_ahead_of_a_full_or_overdue_one() -> None:
    f = former(max_batch_size=4)
    for i in range(3):
        f.add(item(i, 100, t=0.0))  # 128 bucket, 3 of 4, fresh
    f.add(item(10, 200, t=0.0))  # 256 bucket, 1 of 4, fresh
    for i in range(20, 24):
        f.add(item(i, 10, t=0.0))  # 16 bucket, full
    f.add(item(30, 40, t=-1.0))  # 64 bucket, 1 of 4, overdue
    order = f.pop_ready(now=0.0, limit=4, hungry=True)
    assert [(b.bucket, b.reason) for b in order] == [
        (16, FireReason.FULL), (64, FireReason.DELAY), (128, FireReason.HUNGRY),
        (256, FireReason.HUNGRY)]


def test_batches_sized_by_time_shrink_to_the_token_budget_but_keep_eight_rows() -> None:
    f = BatchFormer([16, 64, 256], max_batch_tokens=2048, max_batch_size=64,
                    max_queue_delay={Priority.INTERACTIVE: 0.01, Priority.BATCH: 0.05})
    assert [f.capacity(b) for b in (16, 64, 256)] == [64, 32, 8]
    f.limit_tokens(640)  # e.g. 0.1 s of a device that runs 6,400 padded tokens a second
    assert [f.capacity(b) for b in (16, 64, 256)] == [40, 10, 8]
    f.limit_tokens(64)
    assert [f.capacity(b) for b in (16, 64, 256)] == [8, 8, 8]
    f.limit_tokens(None)
    assert [f.capacity(b) for b in (16, 64, 256)] == [64, 32, 8]
    f.limit_tokens(1_000_000)  # a fast device: the model's own budget still applies
    assert [f.capacity(b) for b in (16, 64, 256)] == [64, 32, 8]
