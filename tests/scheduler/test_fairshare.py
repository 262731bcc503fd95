"""Weighted deficit round-robin: service in proportion to weight, not to backlog."""

from __future__ import annotations

from scheduler.fairshare import FairShare, Lane
from schemas.states import Priority

BATCH, INTERACTIVE = Priority.BATCH, Priority.INTERACTIVE


def serve(policy: FairShare, backlog: dict[Lane, list[int]], rounds: int) -> list[Lane]:
    order = []
    for _ in range(rounds):
        policy.set_active([ln for ln, chunks in backlog.items() if chunks])
        lane = policy.next_lane()
        if lane is None:
            break
        n = backlog[lane].pop(0)
        policy.charge(lane, n)
        order.append(lane)
    return order


def test_weights_3_to_1_share_items_3_to_1_within_5_percent() -> None:
    a, b = Lane("m", BATCH, "a"), Lane("m", BATCH, "b")
    weights = {"a": 3.0, "b": 1.0}
    policy = FairShare(lambda t: weights[t])
    backlog = {a: [256] * 400, b: [256] * 400}
    serve(policy, backlog, rounds=200)
    ratio = policy.served[a] / policy.served[b]
    assert abs(ratio - 3.0) / 3.0 < 0.05, ratio


def test_a_one_item_tenant_is_served_within_one_round_of_a_huge_backlog() -> None:
    a, b = Lane("m", BATCH, "a"), Lane("m", INTERACTIVE, "b")
    policy = FairShare(lambda t: 1.0)
    backlog = {a: [256] * 20, b: []}
    serve(policy, backlog, rounds=3)  # A is being served
    backlog[b] = [1]
    order = serve(policy, backlog, rounds=3)
    assert b in order[:2]


def test_batch_priority_is_not_starved_by_interactive() -> None:
    i, b = Lane("m", INTERACTIVE, "t"), Lane("m", BATCH, "t")
    policy = FairShare(lambda t: 1.0)
    backlog = {i: [64] * 1000, b: [64] * 1000}
    serve(policy, backlog, rounds=500)
    assert policy.served[b] > 0
    assert 3.5 < policy.served[i] / policy.served[b] < 4.5  # the interactive multiplier


def test_the_interactive_multiplier_and_quantum_set_a_visits_credit() -> None:
    policy = FairShare(lambda t: 2.0, quantum=10, interactive_multiplier=3.0)
    assert policy.quantum(Lane("m", INTERACTIVE, "t")) == 60.0
    assert policy.quantum(Lane("m", BATCH, "t")) == 20.0


def test_a_lane_that_went_idle_leaves_the_ring_and_comes_back_without_its_old_debt() -> None:
    a, b = Lane("m", BATCH, "a"), Lane("m", BATCH, "b")
    policy = FairShare(lambda t: 1.0)
    policy.set_active([a, b])
    assert policy.next_lane() == a
    policy.charge(a, 10_000)  # deep debt: ~156 visits of credit
    policy.set_active([b])
    assert policy.lanes() == [b]
    policy.set_active([a, b])
    # Had the debt survived, a would not be served again for ~156 rounds.
    order = serve(policy, {a: [64] * 10, b: [64] * 10}, rounds=4)
    assert order.count(a) == 2 and order.count(b) == 2, order
