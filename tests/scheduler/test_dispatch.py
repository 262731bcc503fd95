"""The step's synchronous half: decide what to form, then absorb each publish outcome."""

from __future__ import annotations

import pytest

from scheduler.dispatch import Backoff, Dispatch
from scheduler.former import PendingItem
from scheduler.held import HeldChunks
from schemas.states import Priority
from tests.scheduler.helpers import chunk, pipe


def setup(n_items: int = 3, **chunk_kw):
    """A pipe whose former holds the ``n_items`` of one held chunk (two per batch)."""
    p, held = pipe(max_batch_size=2), HeldChunks()
    c = chunk(n=n_items, **chunk_kw)
    held.hold(("j", 0), msg=object(), chunk=c, trace="tp")
    for it in c.items:
        p.former.add(PendingItem("j", it.index, [1, 2], Priority.BATCH, 0.0, ("j", 0)))
    return p, held, Dispatch(held, Backoff(0.25, 2.0))


def test_backoff_doubles_from_its_first_pause_to_its_longest_and_a_success_resets() -> None:
    b = Backoff(0.25, 2.0)
    assert b.ready(0.0)
    pauses = []
    for _ in range(6):
        b.failed(10.0)
        pauses.append(next(t for t in (0.25, 0.5, 1.0, 2.0) if b.ready(10.0 + t)))
    assert pauses == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    b.succeeded()
    assert b.failed(20.0) == 1 and not b.ready(20.2) and b.ready(20.25)


def test_without_credit_nothing_is_formed_and_the_pipe_waits_for_a_runner() -> None:
    p, _, d = setup()
    assert d.form(p, 0, now=100.0, hungry=True) == []
    assert p.no_credit and len(p.former) == 3
    assert len(d.form(p, 5, now=100.0, hungry=False)) == 2 and not p.no_credit


def test_formation_stops_at_the_runners_credit() -> None:
    p, _, d = setup(n_items=6)
    assert len(d.form(p, 2, now=100.0, hungry=False)) == 2 and len(p.former) == 2


def test_a_chunk_settles_only_when_its_last_item_is_published() -> None:
    p, held, d = setup()
    first, second = d.form(p, 2, now=100.0, hungry=False)
    d.published(p, first, now=100.0)
    assert held.settled() == []
    d.published(p, second, now=100.0)
    assert held.settled() == [("j", 0)]


def test_a_failed_publish_requeues_that_batch_and_the_later_ones_and_backs_off() -> None:
    p, held, d = setup()
    formed = d.form(p, 2, now=100.0, hungry=False)
    d.failed(p, formed, ConnectionError("nats down"), now=100.0)
    assert len(p.former) == 3 and held.settled() == []
    assert not d.backoff.ready(100.1) and d.backoff.ready(100.25)
    again = d.form(p, 2, now=100.25, hungry=False)
    assert [[i.index for i in fb.items] for fb in again] == [
        [i.index for i in fb.items] for fb in formed]  # formed again, first


def test_a_batch_carries_each_jobs_deadline_trace_and_enqueue_time() -> None:
    p, _, d = setup(n_items=2, deadline=500.0)
    [fb] = d.form(p, 1, now=100.0, hungry=False)
    batch = d.to_batch(p, fb)
    assert (batch.model, batch.model_version, batch.bucket) == ("m", 1, 16)
    assert batch.deadlines == {"j": 500.0} and batch.traces == {"j": "tp"}
    assert [(i.index, i.enqueued_at) for i in batch.items] == [(0, 5.0), (1, 5.0)]


@pytest.mark.parametrize("n_items", [1, 2, 5])
def test_every_item_is_in_exactly_one_published_batch_before_its_chunk_settles(n_items) -> None:
    p, held, d = setup(n_items=n_items)
    seen: list[int] = []
    while len(p.former):
        for fb in d.form(p, 1, now=100.0, hungry=False):
            assert held.settled() == []
            d.published(p, fb, now=100.0)
            seen += [i.index for i in fb.items]
    assert sorted(seen) == list(range(n_items)) and held.settled() == [("j", 0)]
