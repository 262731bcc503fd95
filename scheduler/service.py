"""The scheduler's async shell: pull chunks fairly, tokenize, form batches late, publish, ack.

All decisions live in the synchronous ``FairShare`` and ``BatchFormer``; this class only moves
messages. A chunk is acked only when every one of its items is in a published batch, so a crash
anywhere means redelivery, never loss (duplicates are absorbed by the runners' write-back).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

import msgspec
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import errors as jserr

from core import faults, metrics
from core.config import Settings
from core.tasks import stop_task
from core.tracing import HEADER as TRACEPARENT
from core.tracing import bound, continue_or_start, trace_id_of
from models.config import ModelConfig
from models.repository import ModelRepository
from models.tokenize import Encoded, TextTokenizer
from scheduler.fairshare import FairShare, Lane
from scheduler.former import BatchFormer, FormedBatch, PendingItem
from scheduler.lanes import LaneConsumers
from scheduler.observer import QueueObserver
from schemas import subjects
from schemas.bus import CHUNK_DECODER, Batch, BatchItem, Chunk, FailedItem, encode
from schemas.errors import ErrorCode
from store.jobstate import JobStateCache
from store.runners import RunnerRegistry

log = logging.getLogger("inferq.scheduler")

IDLE_POLL_S = 0.2
"""Longest sleep between two looks at lanes and credit; wake-ups usually come first."""


@dataclass
class HeldChunk:
    """A chunk whose items are not all in published batches yet."""

    msg: Msg
    chunk: Chunk
    outstanding: int
    last_progress: float = field(default_factory=time.monotonic)
    trace: str | None = None
    """The job's span for its batches: a child of the chunk's traceparent (NATS header, else
    the chunk body), or None when the chunk came without one."""


@dataclass
class ModelPipe:
    """Per model version: its tokenizer and bucket queues (batches are formed only when
    runners have room, so nothing formed waits here)."""

    name: str
    version: int
    config: ModelConfig
    tokenizer: TextTokenizer
    former: BatchFormer
    unsent: list[tuple[Batch, tuple[str, int]]] = field(default_factory=list)
    """Batches of pre-failed items not yet published, with the chunk they settle."""
    no_credit: bool = False
    """The last credit check found the runners' queue full: formation waits for a runner to
    take a batch, whatever the formers' deadlines say."""


class Scheduler:
    """Long-running loop: ``start()``, then ``stop()`` (idempotent) drains nothing, acks nothing
    it has not finished: held chunks are simply redelivered to another replica."""

    def __init__(self, settings: Settings, nc: NATS, redis: aioredis.Redis,
                 weight_of, *, repo: ModelRepository | None = None):
        self._s = settings
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._runners = RunnerRegistry(redis)
        self._observer = QueueObserver(self._js, JobStateCache(redis), self._runners,
                                       target_wait_s=settings.target_wait_s)
        self._repo = repo or ModelRepository(settings.model_repo)
        self._policy = FairShare(weight_of)
        self._lanes = LaneConsumers(self._js, ack_wait_s=settings.chunk_ack_wait_s)
        self._pipes: dict[tuple[str, int], ModelPipe] = {}
        self._held: dict[tuple[str, int], HeldChunk] = {}
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._signals: list = []
        self._lanes_stale = False
        self._last_lane_refresh = 0.0
        self.published_batches = 0
        self._publish_failures = 0
        self._retry_publish_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._signals = [
                await self._nc.subscribe(subjects.BATCH_WANTED_FILTER, cb=self._on_batch_wanted),
                await self._nc.subscribe(subjects.WORK_ARRIVED_FILTER, cb=self._on_work_arrived),
            ]
            self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self, grace: float = 5.0) -> None:
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
        self._lanes_stale = True
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
                await asyncio.sleep(0.5)
            if not worked:
                await self._idle_wait()

    async def _idle_wait(self) -> None:
        """Sleep until a former's deadline, a wake-up (a runner asks for a batch, a job's first
        chunk arrives) or ``IDLE_POLL_S``, the fallback for lost wake-ups. A former whose
        runners have no room waits for a runner to ask, not for its deadlines: waking at each
        overdue deadline would spin, and the wake-ups would steal CPU from the inference next
        door."""
        deadlines = [d for p in self._pipes.values()
                     if not p.no_credit and (d := p.former.next_deadline())]
        delay = IDLE_POLL_S
        if deadlines:
            delay = min(delay, max(0.001, min(deadlines) - time.monotonic()))
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _step(self) -> bool:
        now = time.monotonic()
        since = now - self._last_lane_refresh
        if since > 0.2 or (self._lanes_stale and since > 0.01) or not self._policy.lanes():
            self._lanes_stale = False
            self._policy.set_active((await self._lanes.backlog()).keys())
            self._last_lane_refresh = now
        worked = await self._pull()
        worked |= await self._publish_ready()
        await self._heartbeat_held()
        await self._observer.maybe_observe(
            self._policy.lanes(), {name: v for (name, v) in self._pipes})
        return worked

    async def _pull(self) -> bool:
        """Pull chunks while the formers hold little (late formation: the rest waits in JOBS,
        where fair share applies). Interactive lanes may be pulled past the hold limit, so an
        urgent item never waits behind a full former of batch work."""
        if self.held_items >= self.hold_limit:
            return await self._pull_interactive()
        pulled = False
        for _ in range(4):
            if self.held_items >= self.hold_limit:
                break
            lane = self._policy.next_lane()
            if lane is None:
                break
            if await self._pull_from(lane) is None:
                self._policy.deactivate(lane)
                continue
            pulled = True
        return pulled

    async def _pull_interactive(self) -> bool:
        held = sum(p.former.count("interactive") for p in self._pipes.values())
        pulled = False
        for lane in self._policy.lanes():
            if lane.priority != "interactive" or held >= self.hold_limit // 4:
                continue
            n = await self._pull_from(lane)
            if n is not None:
                held += n
                pulled = True
        return pulled

    async def _pull_from(self, lane: Lane) -> int | None:
        """One chunk from the lane into the formers, charged to the lane; None if empty."""
        msg = await self._fetch(lane)
        if msg is None:
            return None
        n = await self._accept(msg)
        self._policy.charge(lane, n)
        return n

    async def _fetch(self, lane: Lane) -> Msg | None:
        sub = await self._lanes.subscription(lane)
        try:
            msgs = await sub.fetch(1, timeout=0.05)
        except (TimeoutError, jserr.FetchTimeoutError):
            return None
        except jserr.NotFoundError:
            await self._lanes.forget(lane)  # reaped by the server; recreated on next pull
            return None
        return msgs[0] if msgs else None

    async def _accept(self, msg: Msg) -> int:
        try:
            chunk = CHUNK_DECODER.decode(msg.data)
        except msgspec.DecodeError:
            log.error("undecodable chunk on %s: terminated", msg.subject)
            await msg.term()
            return 0
        key = (chunk.job_id, chunk.chunk)
        incoming = (msg.headers or {}).get(TRACEPARENT) or chunk.traceparent
        trace = continue_or_start(incoming).header() if incoming else None
        with bound(job_id=chunk.job_id, tenant=chunk.tenant, trace_id=trace_id_of(trace)):
            return await self._accept_chunk(msg, chunk, key, trace)

    async def _accept_chunk(self, msg: Msg, chunk: Chunk, key: tuple[str, int],
                            trace: str | None) -> int:
        if key in self._held:  # redelivered while we still hold it: keep the first
            await msg.in_progress()
            return 0
        pipe = self._pipe(chunk.model, chunk.model_version)
        now = time.monotonic()
        held = HeldChunk(msg, chunk, outstanding=len(chunk.items), trace=trace)
        self._held[key] = held
        texts = [it.text for it in chunk.items]
        encoded = await asyncio.to_thread(pipe.tokenizer.encode, texts)
        failed: list[FailedItem] = []
        expired = chunk.deadline is not None and time.time() >= chunk.deadline
        for it, enc in zip(chunk.items, encoded, strict=True):
            if expired:
                failed.append(FailedItem(chunk.job_id, it.index, ErrorCode.DEADLINE_EXCEEDED.value,
                                         "the job's deadline passed before the item ran", it.id))
            elif isinstance(enc, Encoded):
                pipe.former.add(PendingItem(
                    chunk.job_id, it.index, enc.ids, chunk.priority, now, key,
                    enc.truncated, it.id))
            else:
                failed.append(FailedItem(chunk.job_id, it.index, enc.code, enc.message, it.id))
        if failed:
            traces = {chunk.job_id: trace} if trace else {}
            pipe.unsent.append((Batch(uuid.uuid4().hex, pipe.name, pipe.version, 0, [], failed,
                                      time.time(), traces=traces), key))
            await self._publish_unsent(pipe)
        return len(chunk.items)

    async def _publish_unsent(self, pipe: ModelPipe) -> None:
        """Publish the batches of items that failed before inference (empty text, deadline);
        those that cannot be published now stay queued and are retried on the next step."""
        while pipe.unsent:
            batch, key = pipe.unsent[0]
            try:
                await self._publish(pipe, batch)
            except Exception:
                log.warning("publishing %d failed item(s) failed; will retry",
                            len(batch.failed), exc_info=True)
                return
            pipe.unsent.pop(0)
            self._settle([(key, len(batch.failed))])

    async def _publish_ready(self) -> bool:
        worked = False
        now = time.monotonic()
        if now < self._retry_publish_at:
            return False
        for pipe in self._pipes.values():
            if pipe.unsent:
                await self._publish_unsent(pipe)
            if not len(pipe.former):
                continue
            credit = await self._credit(pipe)
            pipe.no_credit = credit <= 0
            if pipe.no_credit:
                continue
            # At the hold limit nothing more comes in until batches leave: a runner with room
            # gets the fullest partial batch now rather than idling until a deadline.
            formed = pipe.former.pop_ready(now, limit=credit,
                                           hungry=self.held_items >= self.hold_limit)
            for n, fb in enumerate(formed):
                try:
                    await self._publish(pipe, self._to_batch(pipe, fb))
                except Exception as exc:  # noqa: BLE001 - any publish failure: retry later
                    # Not published (NATS down, a leader election, a full store): the items go
                    # back to their buckets, to be formed again; nothing is settled or acked.
                    # Back off (0.25 s doubling to 2 s) and log once per streak.
                    for unsent in formed[n:]:
                        pipe.former.requeue(unsent.items)
                    self._publish_failures += 1
                    self._retry_publish_at = now + min(2.0, 0.25 * 2 ** (
                        self._publish_failures - 1))
                    if self._publish_failures == 1:
                        log.warning("publishing a batch failed (%s); %d item(s) requeued, "
                                    "backing off", exc, sum(len(b.items) for b in formed[n:]))
                    break
                self._publish_failures = 0
                self._observe(pipe, fb, now)
                faults.crash_point("scheduler.after_publish")
                counts: dict[tuple[str, int], int] = {}
                for it in fb.items:
                    counts[it.source] = counts.get(it.source, 0) + 1
                self._settle(counts.items())
                worked = True
        await self._ack_settled()
        return worked

    def _to_batch(self, pipe: ModelPipe, fb: FormedBatch) -> Batch:
        items = [BatchItem(i.job_id, i.index, i.token_ids, i.truncated, i.client_id,
                           self._held[i.source].chunk.created_at) for i in fb.items]
        deadlines: dict[str, float] = {}
        traces: dict[str, str] = {}
        for i in fb.items:
            held = self._held[i.source]
            if held.chunk.deadline is not None:
                deadlines[i.job_id] = held.chunk.deadline
            if held.trace:
                traces[i.job_id] = held.trace
        return Batch(uuid.uuid4().hex, pipe.name, pipe.version, fb.bucket, items, [],
                     time.time(), deadlines, traces)

    def _observe(self, pipe: ModelPipe, fb: FormedBatch, now: float) -> None:
        b = str(fb.bucket)
        metrics.BATCH_SIZE.labels(pipe.name, b).observe(len(fb.items))
        metrics.BATCH_TOKENS.labels(pipe.name, b).observe(fb.padded_tokens)
        ratio = fb.padded_tokens / max(1, fb.real_tokens)
        metrics.BATCH_PADDING.labels(pipe.name, b).observe(ratio)
        for it in fb.items:
            metrics.SCHEDULER_WAIT.labels(pipe.name, it.priority).observe(now - it.enqueued_at)

    async def _publish(self, pipe: ModelPipe, batch: Batch) -> None:
        first = batch.items[0].job_id if batch.items else (
            batch.failed[0].job_id if batch.failed else None)
        trace = batch.traces.get(first) if first else None
        await self._js.publish(subjects.batch_subject(pipe.name, pipe.version), encode(batch),
                               headers={TRACEPARENT: trace} if trace else None)
        self.published_batches += 1

    def _settle(self, counts) -> None:
        for key, n in counts:
            held = self._held[key]
            held.outstanding -= n
            held.last_progress = time.monotonic()

    async def _ack_settled(self) -> None:
        done = [k for k, h in self._held.items() if h.outstanding <= 0]
        for key in done:
            held = self._held.pop(key)
            faults.crash_point("scheduler.before_ack")
            await held.msg.ack()

    async def _heartbeat_held(self) -> None:
        """Tell JetStream we are still working on chunks held longer than a third of AckWait."""
        limit = self._s.chunk_ack_wait_s / 3
        now = time.monotonic()
        for held in self._held.values():
            if now - held.last_progress > limit:
                await held.msg.in_progress()
                held.last_progress = now

    async def _credit(self, pipe: ModelPipe) -> int:
        """Batches to form now: one per runner pull request waiting on the model version's
        BATCHES consumer (each runner asks for its next batch while it runs one), plus
        ``batches_per_runner`` queued per live runner, minus the batches already waiting.
        No runner, no batches: the work stays in JOBS, where fair share applies."""
        try:
            info = await self._js.consumer_info(
                subjects.BATCHES_STREAM, subjects.runner_consumer(pipe.name, pipe.version))
        except jserr.NotFoundError:  # no runner has ever started
            return 0
        queued = 0
        if self._s.batches_per_runner:
            queued = self._s.batches_per_runner * await self._runners.count(pipe.name,
                                                                            pipe.version)
        return (info.num_waiting or 0) + queued - (info.num_pending or 0)

    # -- helpers ----------------------------------------------------------------------------
    @property
    def held_items(self) -> int:
        """Items in the formers: pulled from JOBS, not yet in a published batch."""
        return sum(len(p.former) for p in self._pipes.values())

    @property
    def hold_limit(self) -> int:
        """Items the formers may hold: enough to fill every bucket's batches, small enough
        that fairness is still decided in JOBS for everything else."""
        sizes = [p.config.max_batch_size for p in self._pipes.values()] or [64]
        return 8 * max(sizes)

    def _pipe(self, model: str, version: int) -> ModelPipe:
        key = (model, version)
        pipe = self._pipes.get(key)
        if pipe is None:
            cfg = self._repo.config(model, version)
            tok = TextTokenizer.from_dir(self._repo.version_dir(model, version), cfg)
            former = BatchFormer(cfg.buckets, max_batch_tokens=cfg.max_batch_tokens,
                                 max_batch_size=cfg.max_batch_size,
                                 max_queue_delay={"interactive": self._s.max_queue_delay_s,
                                                  "batch": self._s.max_queue_delay_s * 4})
            pipe = self._pipes[key] = ModelPipe(model, version, cfg, tok, former)
        return pipe
