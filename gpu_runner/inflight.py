"""The batches in a runner's hands: how many may be inferred at once, and whether the next one
runs beside others, on its own share of the device, or alone on all of it.

A backend with ``concurrency`` k > 1 (OpenVINO's streams) runs up to k batches side by side,
each on one share, with no barrier between them. A batch that arrives while the runner is idle
runs alone on the whole device (the fastest for it: an interactive item on a quiet runner), and
nothing starts beside it until it is done; a batch that was already waiting when the runner
asked for one (work is backing up), or that starts while another runs, runs on a share. With
k = 1 this is the plain pipeline: one batch inferred while the previous one is written back.

A backend with ``ahead`` a > 0 (a device that works apart from the CPU) also takes a batches
launched beyond its k, padded and waiting at the device gate (``gpu_runner.gate``), so the next
starts the moment one ends; an urgent one waiting there goes first. Not while interactive work
flows: until ``urgent_window_s`` after the last urgent batch nothing waits ahead, so an urgent
batch is never held behind batch work already queued at the device, and the runner's loop
(busier the faster batches go) answers it sooner. On the 2-core machine, simulated device:
queuing ahead made 10,000-item jobs 1.24x as fast end to end (``bench/bench_pipeline.py``),
and without this pause it cost a 1-item interactive job beside a batch job ~10 ms at p50 and
up to 50 ms at p95 (``bench/bench_service.py --backend simulated``).

In hand at most k + 1 + 2a batches (inferring, waiting at the device, being written back), so
memory stays bounded and a slow store holds the next inference back rather than piling up
results. A device that takes a batch ahead may also have one more written back per batch
ahead: its batches take a few ms each, and a write-back (store commit, Redis, ack) 15-30 ms on
a busy 2-core machine, so with one write-back the device waited for the store. With this and
the runner's speed reported at once (``service.FIRST_MEASURE_S``), 10,000-item jobs on the
simulated device (2 ms + 1 µs/token, ``bench/bench_pipeline.py``) ran at 13,342 / 13,426 /
12,362 items/s against 12,825 / 12,229 / 11,479 before, in alternating rounds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("inferq.runner")

Inferred = Callable[[], None]
"""Called by a batch's work once its inference is over (the device is free for the next)."""

BatchWork = Callable[[bool, Inferred], Awaitable[None]]
"""A batch's whole stay: ``work(shared, inferred)`` infers (calling ``inferred()``), then writes
back and acks. Settles its own failures."""


class InFlight:
    """Up to ``concurrency + ahead`` batches inferring or waiting at the device at once (no
    more than ``concurrency`` within ``urgent_window_s`` of an urgent batch), at most
    ``concurrency + 1 + 2 * ahead`` in hand."""

    def __init__(self, concurrency: int, ahead: int = 0, *, urgent_window_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.concurrency = max(1, concurrency)
        self.ahead = max(0, ahead)
        self._urgent_window_s = urgent_window_s
        self._clock = clock
        self._urgent_at: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self._inferring = 0
        self._alone = False
        """A batch runs on the whole device: nothing starts beside it."""
        self._changed = asyncio.Event()

    @property
    def inferring(self) -> int:
        """Batches being inferred now, or waiting at the device for their turn."""
        return self._inferring

    def __len__(self) -> int:
        """Batches in hand: inferring or being written back."""
        return len(self._tasks)

    @property
    def queue_ahead(self) -> int:
        """Batches that may wait at the device now: ``ahead``, or none while interactive work
        flows (an urgent batch launched within ``urgent_window_s``)."""
        if self._urgent_at is not None and (
                self._clock() - self._urgent_at < self._urgent_window_s):
            return 0
        return self.ahead

    def _full(self) -> bool:
        ahead = self.queue_ahead
        write_backs = 1 + ahead
        return (self._alone or self._inferring >= self.concurrency + ahead
                or len(self._tasks) >= self.concurrency + ahead + write_backs)

    async def room(self) -> None:
        """Wait until another batch may start inferring."""
        while self._full():
            self._changed.clear()
            await self._changed.wait()

    def launch(self, work: BatchWork, *, backlogged: bool, urgent: bool = False
               ) -> asyncio.Task:
        """Start a batch's work (call after ``room``). It runs on a share of the device when
        another batch is inferring or when it was already waiting before the runner asked
        (``backlogged``: more work is backing up behind it); else alone, on all of it."""
        if urgent:
            self._urgent_at = self._clock()
        shared = self.concurrency > 1 and (self._inferring > 0 or backlogged)
        self._inferring += 1
        self._alone = self.concurrency > 1 and not shared
        over = False

        def inferred() -> None:
            nonlocal over
            if not over:
                over = True
                self._inferring -= 1
                if not shared:
                    self._alone = False
                self._changed.set()

        def finished(task: asyncio.Task) -> None:
            inferred()
            self._tasks.discard(task)
            self._changed.set()
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.error("a batch's work failed outside its stage guards", exc_info=exc)

        task = asyncio.create_task(work(shared, inferred), name="runner-batch")
        self._tasks.add(task)
        task.add_done_callback(finished)
        return task

    async def drain(self) -> None:
        """Wait until every batch in hand is written back (or settled)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def cancel(self) -> None:
        """Cancel the batches in hand (shutdown past its grace): they are redelivered."""
        for task in self._tasks:
            task.cancel()
