"""The synchronous half of the scheduler's step: decide the batches to form, absorb what became
of each one once published (or not).

No I/O here: the async shell asks the runners for credit, publishes, and acks; this class
decides from the formers and keeps the books (which chunks are settled, when to publish again,
the batch metrics), so each rule has one place and is testable without an event loop.
"""

from __future__ import annotations

import logging
import time
import uuid

from core import metrics
from scheduler.former import FormedBatch
from scheduler.held import HeldChunks, counts_by_chunk
from scheduler.pipes import ModelPipe
from schemas.bus import Batch, BatchItem
from schemas.states import Priority

log = logging.getLogger("inferq.scheduler")


class Backoff:
    """Pause between publish attempts after failures: ``first_s``, doubling per failure in a
    row up to ``max_s``; a success ends the streak."""

    def __init__(self, first_s: float, max_s: float):
        self._first = first_s
        self._max = max_s
        self._retry_at = 0.0
        self.streak = 0
        """Publish failures in a row."""

    def ready(self, now: float) -> bool:
        """Whether publishing may be tried at ``now``."""
        return now >= self._retry_at

    def failed(self, now: float) -> int:
        """Record a failure at ``now``; returns the streak (1: the first, worth a log line)."""
        self.streak += 1
        self._retry_at = now + min(self._max, self._first * 2 ** (self.streak - 1))
        return self.streak

    def succeeded(self) -> None:
        """A publish went through: the next failure starts a new streak."""
        self.streak = 0


class Dispatch:
    """Decides which batches a pipe forms now, and absorbs each publish outcome."""

    def __init__(self, held: HeldChunks, backoff: Backoff):
        self._held = held
        self.backoff = backoff

    def form(self, pipe: ModelPipe, credit: int, now: float, *, hungry: bool
             ) -> list[FormedBatch]:
        """Decide: at most ``credit`` batches (late formation: only what runners can take).
        With no credit the pipe is marked so the shell's sleep ignores its deadlines.
        ``hungry`` (the formers hold all they may, or every lane was just emptied): a runner
        with room gets the fullest partial batch now rather than idling until a deadline."""
        pipe.no_credit = credit <= 0
        if pipe.no_credit:
            return []
        return pipe.former.pop_ready(now, limit=credit, hungry=hungry)

    def form_urgent(self, pipe: ModelPipe, credit: int, now: float) -> list[FormedBatch]:
        """Decide the urgent batches: at most ``credit`` (runners' pull requests waiting on
        the urgent subject) batches led by interactive items, formed at once — a runner is
        waiting, and holding them for a fuller batch would only add latency. What credit
        does not cover stays in its bucket (more interactive items join it) or goes with the
        batch work."""
        if credit <= 0:
            return []
        return pipe.former.pop_ready(now, limit=credit, hungry=True,
                                     led_by=Priority.INTERACTIVE)

    def to_batch(self, pipe: ModelPipe, fb: FormedBatch, *, urgent: bool = False) -> Batch:
        """The wire message of a formed batch, with each job's deadline and trace."""
        items: list[BatchItem] = []
        deadlines: dict[str, float] = {}
        traces: dict[str, str] = {}
        for i in fb.items:
            held = self._held[i.source]
            items.append(BatchItem(i.job_id, i.index, i.token_ids, i.truncated, i.client_id,
                                   held.chunk.created_at))
            if held.chunk.deadline is not None:
                deadlines[i.job_id] = held.chunk.deadline
            if held.trace:
                traces[i.job_id] = held.trace
        return Batch(uuid.uuid4().hex, pipe.name, pipe.version, fb.bucket, items, [],
                     time.time(), deadlines, traces, urgent)

    def published(self, pipe: ModelPipe, fb: FormedBatch, now: float) -> None:
        """Absorb a published batch: the streak ends, the metrics record it, and its items
        settle their chunks (those fully settled are acked by the shell)."""
        self.backoff.succeeded()
        record_batch(pipe.name, fb, now)
        counts = counts_by_chunk(i.source for i in fb.items)
        for key, n in counts.items():  # each tenant's share of served work
            chunk = self._held[key].chunk
            metrics.TENANT_ITEMS_BATCHED.labels(pipe.name, chunk.tenant, chunk.priority).inc(n)
        self._held.settle(counts.items(), now)

    def failed(self, pipe: ModelPipe, unsent: list[FormedBatch], exc: BaseException,
               now: float) -> None:
        """Absorb a failed publish (NATS down, a leader election, a full store): the items of
        this and the later batches go back to the front of their buckets, to be formed again;
        nothing is settled or acked; publishing backs off (logged once per streak)."""
        for fb in reversed(unsent):  # last first, so that the buckets keep their order
            pipe.former.requeue(fb.items)
        if self.backoff.failed(now) == 1:
            log.warning("publishing a batch failed (%s); %d item(s) requeued, backing off",
                        exc, sum(len(fb.items) for fb in unsent))


def record_batch(model: str, fb: FormedBatch, now: float) -> None:
    """Batch size, padded tokens, padding ratio, and each item's wait in the scheduler."""
    b = str(fb.bucket)
    metrics.BATCH_SIZE.labels(model, b).observe(len(fb.items))
    metrics.BATCH_TOKENS.labels(model, b).observe(fb.padded_tokens)
    metrics.BATCH_PADDING.labels(model, b).observe(fb.padded_tokens / max(1, fb.real_tokens))
    for it in fb.items:
        metrics.SCHEDULER_WAIT.labels(model, it.priority).observe(now - it.enqueued_at)
