"""The scheduler's async shell: pull chunks fairly, form batches late, publish them, ack chunks.

All decisions live in synchronous classes (``FairShare`` and ``BatchFormer`` behind
``FairPuller`` and ``Dispatch``); this class only moves messages. One step:

1. pull: refresh the active lanes, pull chunks in fair-share order while the formers hold
   little (``FairPuller``; each chunk is held, tokenized and queued by ``ChunkIntake``);
2. decide: per model version, ask the runners for credit and form at most that many batches
   (``Dispatch.form``: late formation);
3. publish each batch, then absorb the outcome (``Dispatch.published`` / ``.failed``: settle
   chunks, record metrics, or requeue and back off);
4. ack the chunks whose items are all in published batches; extend the quiet ones; sample
   the queues.

A chunk is acked only when every one of its items is in a published batch, so a crash anywhere
means redelivery, never loss (duplicates are absorbed by the runners' write-back).
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from core import faults
from core.config import Settings
from core.tasks import stop_task
from core.tracing import bound, trace_id_of
from models.repository import ModelRepository
from scheduler.credit import RunnerCredit
from scheduler.dispatch import Backoff, Dispatch
from scheduler.fairshare import FairShare, Lane
from scheduler.former import FormedBatch, queue_delays
from scheduler.held import HeldChunks
from scheduler.intake import ChunkIntake, decode_chunk, record_formation, trace_for
from scheduler.lanes import LaneConsumers
from scheduler.observer import QueueObserver
from scheduler.pipes import HOLD_S, ModelPipe, ModelPipes
from scheduler.publisher import BatchPublisher
from scheduler.puller import FairPuller
from schemas import subjects
from schemas.states import Priority
from store.jobstate import JobStateCache
from store.runners import RunnerRegistry

log = logging.getLogger("inferq.scheduler")

ERROR_PAUSE_S = 0.5
"""Pause after a step failed (a transient bus or Redis error) before the next one."""


class Scheduler:
    """Long-running loop: ``start()``, then ``stop()`` (idempotent) drains nothing, acks nothing
    it has not finished: held chunks are simply redelivered to another replica."""

    def __init__(self, settings: Settings, nc: NATS, redis: aioredis.Redis,
                 weight_of, *, repo: ModelRepository | None = None):
        s = self._s = settings
        self._nc = nc
        js = nc.jetstream()
        runners = RunnerRegistry(redis)
        self._pipes = ModelPipes(repo or ModelRepository(s.model_repo),
                                 queue_delays(s.max_queue_delay_s, s.batch_queue_delay_factor))
        self._held = HeldChunks()
        self._intake = ChunkIntake(self._pipes, self._held)
        self._lanes = LaneConsumers(js, ack_wait_s=s.chunk_ack_wait_s,
                                    idle_reap_s=s.lane_idle_reap_s)
        self._observer = QueueObserver(js, JobStateCache(redis), runners, self._lane_backlog,
                                       target_wait_s=s.target_wait_s, every_s=s.queue_observe_s)
        policy = FairShare(weight_of, quantum=s.fair_share_quantum,
                           interactive_multiplier=s.interactive_multiplier)
        self._puller = FairPuller(policy, self._lanes, self._pipes, self._accept,
                                  refresh_s=s.lane_refresh_s, held=self._held.per_lane)
        self._runner_credit = RunnerCredit(js, runners, batches_per_runner=s.batches_per_runner,
                                           queue_s=s.runner_queue_s,
                                           max_batches=s.runner_queue_max_batches,
                                           time_budget_s=s.batch_time_budget_s)
        self._publisher = BatchPublisher(js)
        self._dispatch = Dispatch(self._held, Backoff(s.publish_backoff_s,
                                                      s.publish_backoff_max_s))
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._signals: list = []

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen for hints (a runner wants a batch, a job's first chunk arrived), then loop."""
        if self._task is None:
            self._signals = [
                await self._nc.subscribe(subjects.BATCH_WANTED_FILTER, cb=self._on_batch_wanted),
                await self._nc.subscribe(subjects.WORK_ARRIVED_FILTER, cb=self._on_work_arrived),
            ]
            self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self, grace: float = 5.0) -> None:
        """Finish the current step (cancel it after ``grace``), drop the hint and lane
        subscriptions. Idempotent."""
        self._stopping.set()
        self._wake.set()
        task, self._task = self._task, None
        await stop_task(task, grace)
        for sub in self._signals:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection already gone
                pass
        self._signals = []
        await self._lanes.close()

    async def _on_batch_wanted(self, msg: Msg) -> None:
        self._wake.set()

    async def _on_work_arrived(self, msg: Msg) -> None:
        self._puller.mark_stale(interactive=subjects.is_interactive_arrival(msg.subject))
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the loop alive through transient bus/redis errors
                log.exception("scheduler step failed")
                worked = False
                await asyncio.sleep(ERROR_PAUSE_S)
            if not worked:
                await self._idle_wait()

    async def _idle_wait(self) -> None:
        """Sleep until a former's deadline, a wake-up (a runner asks for a batch, a job's first
        chunk arrives) or ``scheduler_idle_poll_s``, the fallback for lost wake-ups. A former
        whose runners have no room waits for a runner to ask, not for its deadlines: waking at
        each overdue deadline would spin, and the wake-ups would steal CPU from the inference
        next door."""
        delay = self._s.scheduler_idle_poll_s
        deadline = self._pipes.next_deadline()
        if deadline is not None:
            delay = min(delay, max(0.001, deadline - time.monotonic()))
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _step(self) -> bool:
        """One turn (see the module docstring); True if it pulled or published anything."""
        await self._puller.refresh(time.monotonic())
        worked = await self._puller.pull()
        worked |= await self._dispatch_ready()
        await self._heartbeat_held()
        await self._observer.maybe_observe(self._pipes.versions())
        return worked

    async def _lane_backlog(self) -> list[Lane]:
        return list(await self._lanes.backlog())

    # -- intake -----------------------------------------------------------------------------
    async def _accept(self, msg: Msg) -> int:
        """Take one pulled message in; returns the items it brought (charged to its lane)."""
        chunk = decode_chunk(msg)
        if chunk is None:
            await msg.term()
            return 0
        trace = trace_for(msg, chunk)
        with bound(job_id=chunk.job_id, tenant=chunk.tenant, trace_id=trace_id_of(trace)):
            pipe = await self._intake.admit(msg, chunk, trace)
            if pipe is None:
                return 0
            if pipe.unsent:
                await self._publish_unsent(pipe)
        return len(chunk.items)

    async def _publish_unsent(self, pipe: ModelPipe) -> None:
        """Publish the batches of items that failed before inference (empty text, deadline);
        those that cannot be published now stay queued and are retried on the next step."""
        while pipe.unsent:
            batch, key = pipe.unsent[0]
            try:
                await self._publisher.publish(batch)
            except Exception:
                log.warning("publishing %d failed item(s) failed; will retry",
                            len(batch.failed), exc_info=True)
                return
            pipe.unsent.pop(0)
            self._held.settle([(key, len(batch.failed))], time.monotonic())

    # -- decide, publish, absorb --------------------------------------------------------------
    async def _dispatch_ready(self) -> bool:
        """Per model version: publish its pre-failed items, then form what its runners can
        take, publish, absorb; finally ack the chunks that became fully published."""
        now = time.monotonic()
        if not self._dispatch.backoff.ready(now):
            return False
        worked = False
        for pipe in self._pipes:
            if pipe.unsent:
                await self._publish_unsent(pipe)
            if len(pipe.former):
                worked |= await self._dispatch_pipe(pipe, now)
        await self._ack_settled()
        return worked

    async def _dispatch_pipe(self, pipe: ModelPipe, now: float) -> bool:
        """Decide the pipe's batches — urgent ones first, then what its runners' credit
        covers — and publish them in order; on the first failure the rest go back to the
        former. True if any batch was published."""
        pipe.hold_items = await self._runner_credit.throughput_items(
            pipe.name, pipe.version, now, HOLD_S)
        timed = now - pipe.interactive_seen < self._s.batch_time_budget_window_s
        pipe.former.limit_tokens(
            await self._runner_credit.token_budget(pipe.name, pipe.version, now) if timed
            else None)
        worked = False
        if self._s.urgent_batches and pipe.former.count(Priority.INTERACTIVE):
            credit = await self._runner_credit.urgent_wanted(pipe.name, pipe.version)
            formed = self._dispatch.form_urgent(pipe, credit, now)
            sent = await self._publish_formed(pipe, formed, now, urgent=True)
            worked = sent > 0
            if sent < len(formed):
                return worked  # publishing failed: back off, the rest waits in the former
        if not len(pipe.former):
            return worked
        credit = await self._credit(pipe)
        # Hungry: the formers hold all they may, or interactive items wait and no lane has
        # more to give now (waiting out their queue delay would only idle the runner).
        urgent = self._puller.drained and pipe.former.count(Priority.INTERACTIVE) > 0
        formed = self._dispatch.form(pipe, credit, now,
                                     hungry=urgent or self.held_items >= self.hold_limit)
        sent = await self._publish_formed(pipe, formed, now)
        return worked or sent > 0

    async def _publish_formed(self, pipe: ModelPipe, formed: list[FormedBatch], now: float,
                              *, urgent: bool = False) -> int:
        """Publish formed batches pipelined — all sent in order on one connection, then their
        PubAcks awaited together, so a step pays one round trip (and one storage sync), not
        one per batch, and an interactive chunk arriving meanwhile waits less. Those not
        acknowledged go back to the former (and publishing backs off). Returns how many
        were published."""
        if not formed:
            return 0
        outcomes = await asyncio.gather(
            *(self._publisher.publish(self._dispatch.to_batch(pipe, fb, urgent=urgent))
              for fb in formed), return_exceptions=True)
        unsent, error = [], None
        for fb, outcome in zip(formed, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # any publish failure: retry later
                unsent.append(fb)
                error = outcome
                continue
            faults.crash_point("scheduler.after_publish")
            self._dispatch.published(pipe, fb, now)
            self._runner_credit.observe_batch(pipe.name, pipe.version, len(fb.items))
        if error is not None:
            self._dispatch.failed(pipe, unsent, error, now)
        return len(formed) - len(unsent)

    async def _credit(self, pipe: ModelPipe) -> int:
        """Batches the pipe's runners can take now (``RunnerCredit``)."""
        return await self._runner_credit.batches_wanted(pipe.name, pipe.version,
                                                        time.monotonic())

    async def _ack_settled(self) -> None:
        for key in self._held.settled():
            held = self._held.release(key)
            faults.crash_point("scheduler.before_ack")
            await held.msg.ack()
            record_formation(held)

    async def _heartbeat_held(self) -> None:
        """Tell JetStream we are still working on chunks held longer than a third of AckWait."""
        now = time.monotonic()
        for held in self._held.quiet(now, self._s.chunk_ack_wait_s / 3):
            await held.msg.in_progress()
            held.last_progress = now

    # -- for tests and diagnostics ----------------------------------------------------------
    @property
    def held_items(self) -> int:
        """Items in the formers: pulled from JOBS, not yet in a published batch."""
        return self._pipes.held_items

    @property
    def hold_limit(self) -> int:
        """Items the formers may hold: enough to fill every bucket's batches, small enough
        that fairness is still decided in JOBS for everything else."""
        return self._pipes.hold_limit

    @property
    def published_batches(self) -> int:
        """Batches this replica has published (formed and pre-failed)."""
        return self._publisher.published
