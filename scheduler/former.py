"""Shape-bucketed batch formation: a plain synchronous class, no I/O, no event loop.

Items are grouped per sequence-length bucket (the smallest bucket that fits the item). A bucket
fires when it holds a full batch — ``max_batch_size`` items or ``max_batch_tokens`` padded
tokens, whichever is smaller — or when its oldest item has waited its priority's
``max_queue_delay``. Within a bucket, interactive items go first.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from models import bucketing
from models.config import batch_capacity
from schemas.states import Priority

PRIORITY_ORDER = (Priority.INTERACTIVE, Priority.BATCH)
"""Within a bucket and among candidate batches, interactive work goes first."""

STARVATION_FACTOR = 10
"""A partly filled bucket whose oldest item has waited this many times its priority's delay
ranks with full batches: throughput first while there is a backlog, but no starvation."""


def queue_delays(max_queue_delay_s: float, batch_factor: float) -> dict[Priority, float]:
    """How long each priority's oldest item may wait in a partly filled bucket: interactive
    waits ``max_queue_delay_s``; batch work waits ``batch_factor`` times longer for fuller
    batches."""
    return {Priority.INTERACTIVE: max_queue_delay_s,
            Priority.BATCH: max_queue_delay_s * batch_factor}


class FireReason(enum.StrEnum):
    """Why a batch was formed: its bucket was full, its oldest item overdue, the runners hungry
    (nothing else ready, nothing more can come in), or everything was flushed."""

    FULL = "full"
    DELAY = "delay"
    HUNGRY = "hungry"
    FLUSH = "flush"


@dataclass(frozen=True, slots=True)
class PendingItem:
    """One tokenized item waiting for a batch. ``source`` names the chunk it came from."""

    job_id: str
    index: int
    token_ids: list[int]
    priority: Priority
    enqueued_at: float
    source: object = None
    truncated: bool = False
    client_id: str | None = None

    @property
    def length(self) -> int:
        """Tokens of the item, unpadded."""
        return len(self.token_ids)


@dataclass(frozen=True, slots=True)
class FormedBatch:
    """Items of one bucket that fire together, and why they fired."""

    bucket: int
    items: list[PendingItem]
    reason: FireReason

    @property
    def padded_tokens(self) -> int:
        """What the accelerator pays for: every row padded to the bucket."""
        return self.bucket * len(self.items)

    @property
    def real_tokens(self) -> int:
        """Tokens before padding (padded over real is the padding ratio)."""
        return sum(i.length for i in self.items)


@dataclass
class _Bucket:
    size: int
    capacity: int
    lanes: dict[Priority, deque[PendingItem]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(q) for q in self.lanes.values())

    def oldest(self) -> PendingItem | None:
        """The longest-waiting head item of any priority (it sets the bucket's deadline)."""
        heads = [q[0] for q in self.lanes.values() if q]
        return min(heads, key=lambda i: i.enqueued_at) if heads else None


MIN_TIMED_ROWS = 8
"""Fewest rows a batch sized by time gets (where the config allows that many): below ~8 rows a
CPU backend loses throughput quickly, above it barely gains."""


class BatchFormer:
    """Owns the bucket queues; ``add`` items, then ``pop_ready`` the batches that should fire."""

    def __init__(self, buckets: Iterable[int], *, max_batch_tokens: int, max_batch_size: int,
                 max_queue_delay: Mapping[Priority, float],
                 priority_order: Iterable[Priority] = PRIORITY_ORDER):
        self._sizes = sorted(set(buckets))
        if not self._sizes or self._sizes[0] <= 0:
            raise ValueError("buckets must be positive sequence lengths")
        self._delay = dict(max_queue_delay)
        self._order = list(priority_order)
        self._max_tokens, self._max_size = max_batch_tokens, max_batch_size
        self._budget = max_batch_tokens
        self._buckets = {
            b: _Bucket(b, batch_capacity(b, max_batch_tokens=max_batch_tokens,
                                         max_batch_size=max_batch_size))
            for b in self._sizes
        }
        self._count = 0
        self._by_priority: dict[Priority, int] = {}

    @property
    def max_len(self) -> int:
        """The largest bucket: the longest item the former accepts."""
        return self._sizes[-1]

    def bucket_for(self, length: int) -> int:
        """The bucket an item of ``length`` tokens goes to (``models.bucketing``'s rule)."""
        return bucketing.bucket_for(length, self._sizes)

    def capacity(self, bucket: int) -> int:
        """Items one batch of ``bucket`` holds (``models.config.batch_capacity``)."""
        return self._buckets[bucket].capacity

    def limit_tokens(self, max_tokens: int | None) -> None:
        """Cap each batch at ``max_tokens`` padded tokens (None: the config's budget only), but
        never below ``MIN_TIMED_ROWS`` rows: batches sized by time on a slow device."""
        budget = self._max_tokens if max_tokens is None else min(self._max_tokens, max_tokens)
        if budget == self._budget:
            return  # called on every scheduler step: recompute only when the budget moves
        self._budget = budget
        for b in self._buckets.values():
            full = batch_capacity(b.size, max_batch_tokens=self._max_tokens,
                                  max_batch_size=self._max_size)
            timed = batch_capacity(b.size, max_batch_tokens=budget, max_batch_size=self._max_size)
            b.capacity = max(timed, min(MIN_TIMED_ROWS, full))

    def add(self, item: PendingItem) -> int:
        """Queue an item in its bucket; returns the bucket."""
        b = self._buckets[self.bucket_for(item.length)]
        b.lanes.setdefault(item.priority, deque()).append(item)
        self._count += 1
        self._by_priority[item.priority] = self._by_priority.get(item.priority, 0) + 1
        return b.size

    def __len__(self) -> int:
        return self._count

    def any_full(self) -> bool:
        """Whether some bucket holds a full batch: one could be formed now."""
        return any(len(b) >= b.capacity for b in self._buckets.values())

    def requeue(self, items: list[PendingItem]) -> None:
        """Put the items of a batch that could not be published back at the front of their
        buckets (they keep their enqueue time, so they are formed again first)."""
        for item in reversed(items):
            b = self._buckets[self.bucket_for(item.length)]
            b.lanes.setdefault(item.priority, deque()).appendleft(item)
            self._count += 1
            self._by_priority[item.priority] = self._by_priority.get(item.priority, 0) + 1

    def count(self, priority: Priority) -> int:
        """Items of one priority waiting in the buckets."""
        return self._by_priority.get(priority, 0)

    def pop_ready(self, now: float, *, flush: bool = False, hungry: bool = False,
                  limit: int | None = None, led_by: Priority | None = None
                  ) -> list[FormedBatch]:
        """The batches that should fire now — full buckets, overdue buckets, or all if
        ``flush`` — at most ``limit`` of them (late formation: form only what runners can
        take; the rest keeps waiting in its bucket, where later urgent items can still jump
        ahead). Among candidates: interactive work first, then full batches, then the oldest
        head item.

        ``hungry``: runners have room and no more items can come in (the driver holds all it
        may), so waiting for a deadline would only idle the runners: when nothing above is
        ready, the fullest partial buckets fire too.

        ``led_by``: only buckets whose next batch that priority's item leads (the urgent
        batches, formed ahead of the rest)."""
        out: list[FormedBatch] = []
        while limit is None or len(out) < limit:
            best: tuple[tuple[int, int, float], _Bucket, FireReason] | None = None
            for b in self._buckets.values():
                head = self._head(b)
                if head is None or (led_by is not None and head.priority != led_by):
                    continue
                if len(b) >= b.capacity:
                    reason = FireReason.FULL
                elif flush:
                    reason = FireReason.FLUSH
                elif now >= head.enqueued_at + self._delay.get(head.priority, 0.0):
                    reason = FireReason.DELAY
                elif hungry:
                    reason = FireReason.HUNGRY
                else:
                    continue
                # Interactive first; then full batches before partial ones (throughput while
                # there is a backlog), unless a partial one is long overdue (no starvation);
                # then overdue partial ones, oldest head first; then, when hungry, the
                # fullest of the rest.
                starving = now >= head.enqueued_at + STARVATION_FACTOR * self._delay.get(
                    head.priority, 0.0)
                if reason is FireReason.HUNGRY:
                    rank = (self._rank(head.priority), 2, -len(b) / b.capacity)
                else:
                    tier = 1 if reason is not FireReason.FULL and not starving else 0
                    rank = (self._rank(head.priority), tier, head.enqueued_at)
                if best is None or rank < best[0]:
                    best = (rank, b, reason)
            if best is None:
                break
            _, b, reason = best
            out.append(FormedBatch(b.size, self._take(b, b.capacity), reason))
        return out

    def _rank(self, priority: Priority) -> int:
        return self._order.index(priority) if priority in self._order else len(self._order)

    def _head(self, b: _Bucket) -> PendingItem | None:
        """The item that would lead the bucket's next batch (highest priority, then oldest)."""
        for p in sorted(b.lanes, key=self._rank):
            if b.lanes[p]:
                return b.lanes[p][0]
        return None

    def next_deadline(self) -> float | None:
        """When the earliest partly filled bucket will become overdue (for the driver's sleep)."""
        times = [
            o.enqueued_at + self._delay.get(o.priority, 0.0)
            for b in self._buckets.values() if (o := b.oldest()) is not None
        ]
        return min(times) if times else None

    def _take(self, b: _Bucket, n: int) -> list[PendingItem]:
        taken: list[PendingItem] = []
        lanes = [p for p in self._order if p in b.lanes] + [
            p for p in b.lanes if p not in self._order]
        for p in lanes:
            q = b.lanes[p]
            while q and len(taken) < n:
                taken.append(q.popleft())
                self._by_priority[p] -= 1
        self._count -= len(taken)
        return taken
