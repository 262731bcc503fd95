"""The runner's async shell: pull a batch (the next one while this one runs), run it on the
backend in a worker thread, write back, ack. One runner serves one model version.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict

import msgspec
import numpy as np
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as jsapi
from nats.js import errors as jserr
from redis.asyncio import Redis

from core import faults, metrics
from core.bus import ensure_consumer, hint
from core.config import Settings
from core.tasks import stop_task
from gpu_runner.backends.base import Backend
from gpu_runner.busy import BusyMeter
from gpu_runner.gpu_util import GpuUtilisation
from gpu_runner.prepared import Prepared, job_log_fields, log_context
from gpu_runner.redelivery import RedeliveryLedger, item_key
from gpu_runner.writeback import WriteBack
from models.bucketing import pad_batch
from schemas import subjects
from schemas.api import EmbeddingOutput
from schemas.bus import BATCH_DECODER, Batch, BatchItem, DeadLetter, encode
from schemas.errors import ErrorCode, ItemError
from store.jobstate import JobStateCache
from store.redis_errors import CacheUnavailable
from store.results.base import ItemRecord, ResultStore, StoreError
from store.results.codec import encode_output
from store.runners import RunnerRegistry

log = logging.getLogger("inferq.runner")


POISON_STRIKES = 3
"""Times an item must have been running alone when a runner died before it is declared
poison: once or twice could be unrelated crashes (the chaos suite crashes runners at 20 % of
inference passes and never condemns an innocent item at 3)."""


def _item_error(code: str, message: str) -> ItemError:
    known = ErrorCode._value2member_map_.get(code)
    return ItemError.of(ErrorCode(code), message) if known else ItemError(code, message)


class Runner:
    """Long-running loop with ``start()`` and an idempotent ``stop()``: the batch in hand is
    finished and acked (or left for redelivery if the grace period runs out)."""

    def __init__(self, settings: Settings, nc: NATS, store: ResultStore, cache: JobStateCache,
                 registry: RunnerRegistry, backend: Backend, model: str, version: int,
                 redis: Redis):
        self._s = settings
        self._nc = nc
        self._js = nc.jetstream()
        self._backend = backend
        self._model, self._version = model, version
        self._writeback = WriteBack(store, cache, model, redis)
        self._ledger = RedeliveryLedger(redis)
        self._registry = registry
        self._id = f"runner-{uuid.uuid4().hex[:8]}"
        self._busy = BusyMeter()
        self._gpu_device = getattr(backend, "device", 0)
        self._gpu = GpuUtilisation(self._gpu_device) if backend.name == "tensorrt" else None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._hb_task: asyncio.Task | None = None
        self.batches_done = 0
        self._inferred_unreported = 0

    @property
    def runner_id(self) -> str:
        return self._id

    async def start(self) -> None:
        if self._task is not None:
            return
        cfg = jsapi.ConsumerConfig(
            durable_name=subjects.runner_consumer(self._model, self._version),
            filter_subject=subjects.batch_subject(self._model, self._version),
            ack_policy=jsapi.AckPolicy.EXPLICIT,
            ack_wait=self._s.batch_ack_wait_s,
            # One more than we act on: at the last delivery we dead-letter the batch ourselves.
            max_deliver=self._s.batch_max_deliver + 1,
            max_ack_pending=1024,
        )
        await ensure_consumer(self._js, subjects.BATCHES_STREAM, cfg)
        self._sub = await self._js.pull_subscribe_bind(
            durable=cfg.durable_name, stream=subjects.BATCHES_STREAM)
        await self._registry.heartbeat(self._model, self._version, self._id, 0.0)
        self._task = asyncio.create_task(self._run(), name="runner")
        self._hb_task = asyncio.create_task(self._heartbeat(), name="runner-heartbeat")

    async def stop(self, grace: float | None = None) -> None:
        """Finish and ack the batch in hand (up to AckWait: past that it would be redelivered
        anyway), then leave."""
        self._stopping.set()
        task, self._task = self._task, None
        await stop_task(task, self._s.batch_ack_wait_s if grace is None else grace)
        if self._hb_task is not None:
            self._hb_task.cancel()
            self._hb_task = None
        if self._gpu is not None:
            self._gpu.close()
        try:
            await self._sub.unsubscribe()
        except Exception:  # noqa: BLE001 - connection already gone
            pass
        try:
            await self._registry.leave(self._model, self._version, self._id)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(3)
            ratio = self._busy.ratio()
            metrics.RUNNER_BUSY.labels(self._model).set(ratio)
            if self._gpu is not None and (util := self._gpu.sample()) is not None:
                metrics.GPU_UTILISATION.labels(self._model, str(self._gpu_device)).set(util)
            try:
                await self._registry.heartbeat(self._model, self._version, self._id, ratio,
                                               self._busy.capacity())
            except Exception:
                log.debug("runner heartbeat failed", exc_info=True)

    async def _fetch(self) -> Msg | None:
        """Ask for the next batch, and tell the schedulers we are asking: they form batches
        only for runners waiting on a pull request (late formation), so the wake-up must
        follow the pull request on the wire — one connection keeps the order, and the fetch
        task queues its request before its first real wait."""
        fetching = asyncio.ensure_future(self._sub.fetch(1, timeout=1.0))
        await asyncio.sleep(0)
        await hint(self._nc, subjects.batch_wanted_subject(self._model, self._version))
        try:
            msgs = await fetching
        except (TimeoutError, jserr.FetchTimeoutError):
            return None
        return msgs[0] if msgs else None

    async def _run(self) -> None:
        """Fetch and prepare, infer, write back — overlapped: while one batch is inferred the
        next is fetched, decoded and marked running, and the previous one is written back and
        acked (at most one write-back in flight, so acks stay in order and memory stays
        bounded). Between two inferences there is only the hand-over."""
        pending: asyncio.Task | None = asyncio.create_task(self._next())
        writing: asyncio.Task | None = None
        while not self._stopping.is_set():
            try:
                work = await pending
            except Exception:
                log.warning("fetch failed", exc_info=True)
                await asyncio.sleep(0.5)
                work = None
            pending = asyncio.create_task(self._next()) if not self._stopping.is_set() else None
            if work is not None and work.resume:
                # A redelivery may have killed a runner: it runs alone, as its ledger assumes.
                if writing is not None:
                    await writing
                    writing = None
                await self._guarded(work.msg, self._execute_resume(work))
            elif work is not None:
                records = await self._guarded(work.msg, self._execute(work))
                if writing is not None:
                    await writing
                    writing = None
                if records is not None:
                    writing = asyncio.create_task(
                        self._guarded(work.msg, self._finish(work, records)))
            if pending is None:
                break
        if writing is not None:
            await writing
        if pending is not None:
            pending.cancel()
            try:
                work = await pending
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - leaving anyway
                work = None
            if work is not None:  # prepared but not run: give it back now, not after AckWait
                try:
                    await work.msg.nak()
                except Exception:  # noqa: BLE001 - redelivered after AckWait anyway
                    pass

    async def _guarded(self, msg: Msg, work):
        """A bug must not kill the loop: log it, leave the batch to redelivery (nak with a
        delay), and go on with the next one."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error handling a batch; nak")
            try:
                await msg.nak(delay=5.0)
            except Exception:  # noqa: BLE001 - redelivered after AckWait anyway
                pass
            return None

    async def _next(self) -> Prepared | None:
        msg = await self._fetch()
        if msg is None:
            return None
        return await self._guarded(msg, self._prepare(msg))

    async def _prepare(self, msg: Msg) -> Prepared | None:
        """Decode a batch and mark its items running; None when the message was settled here
        (bad, dead-lettered, or nak'ed for a transient error)."""
        deliveries = msg.metadata.num_delivered if msg.metadata else 1
        if deliveries > 1:
            metrics.REDELIVERIES.labels(self._model).inc()
        try:
            batch = BATCH_DECODER.decode(msg.data)
        except msgspec.DecodeError:
            log.error("undecodable batch: terminated")
            await msg.term()
            return None
        with log_context(batch):
            if deliveries > self._s.batch_max_deliver:
                await self._transient(msg, batch, lambda: self._dead_letter(
                    msg, batch, deliveries, "max deliveries exhausted"))
                return None
            if deliveries > 1:
                return Prepared(msg, batch, deliveries, resume=True)
            try:
                records, run = await self._live_work(batch, time.time())
            except (StoreError, CacheUnavailable) as exc:
                await self._nak(msg, batch, exc)
                return None
            return Prepared(msg, batch, deliveries, records, run)

    async def _execute(self, work: Prepared) -> list[ItemRecord] | None:
        """Run a prepared batch: its item results (pre-failed, late, and inferred)."""
        if not work.run:
            return work.records
        with log_context(work.batch):
            try:
                return work.records + await self._infer(work.msg, work.batch, work.run)
            except (StoreError, CacheUnavailable) as exc:
                await self._nak(work.msg, work.batch, exc)
                return None

    async def _execute_resume(self, work: Prepared) -> None:
        with log_context(work.batch):
            try:
                await self._resume(work.msg, work.batch, work.deliveries)
            except (StoreError, CacheUnavailable) as exc:
                await self._nak(work.msg, work.batch, exc)

    async def _finish(self, work: Prepared, records: list[ItemRecord]) -> None:
        with log_context(work.batch):
            await self._finish_batch(work.msg, work.batch, records)

    async def _finish_batch(self, msg: Msg, batch: Batch, records: list[ItemRecord]) -> None:
        async def commit_and_ack() -> None:
            await self._report_inferred()
            await self._writeback.commit(records, time.time())
            try:
                await msg.ack_sync()
            except Exception as exc:  # noqa: BLE001 - NATS outage: expected, and harmless
                # Counted already: the redelivery will find every item done and just ack.
                log.warning("ack of batch %s failed (%s); it will be redelivered and skipped",
                            batch.batch_id, exc)
                return
            self.batches_done += 1
            faults.crash_point("runner.after_ack")

        await self._transient(msg, batch, commit_and_ack)

    async def _transient(self, msg: Msg, batch: Batch, work) -> None:
        try:
            await work()
        except (StoreError, CacheUnavailable) as exc:
            await self._nak(msg, batch, exc)

    async def _nak(self, msg: Msg, batch: Batch, exc: Exception) -> None:
        deliveries = msg.metadata.num_delivered if msg.metadata else 1
        delay = min(30.0, 0.5 * 2 ** (deliveries - 1))
        log.warning("batch %s: transient error (%s); nak, retry in %.1fs",
                    batch.batch_id, exc, delay)
        try:
            await msg.nak(delay=delay)
        except Exception:
            log.warning("nak failed for batch %s", batch.batch_id, exc_info=True)

    async def _live_work(self, batch: Batch, now: float) -> tuple[list[ItemRecord],
                                                                  list[BatchItem]]:
        """Marks the batch's items running and sorts them: results to record without running
        (pre-failed, past the deadline) and items to run. Items of jobs that are terminal
        (cancelled, deadline passed) or gone (expired) are stale: nothing is written for them.
        """
        indexes: dict[str, list[int]] = defaultdict(list)
        for it in batch.items:
            indexes[it.job_id].append(it.index)
        for f in batch.failed:
            indexes[f.job_id].append(f.index)
        statuses = await self._writeback.mark_running(indexes, now)
        live_jobs = {j for j, s in statuses.items() if s in ("queued", "running")}
        records = [self._failed_record(f.job_id, f.index, f.client_id, _item_error(f.code,
                                                                                 f.message), now)
                   for f in batch.failed if f.job_id in live_jobs]
        run: list[BatchItem] = []
        for it in batch.items:
            if it.job_id not in live_jobs:
                continue
            if batch.deadlines.get(it.job_id, float("inf")) <= now:
                records.append(self._failed_record(it.job_id, it.index, it.client_id, ItemError.of(
                    ErrorCode.DEADLINE_EXCEEDED, "the job's deadline passed before the item ran"),
                    now))
            else:
                run.append(it)
        return records, run

    async def _resume(self, msg: Msg, batch: Batch, deliveries: int) -> None:
        """A redelivered batch may have killed its runner. Skip what a predecessor already
        counted; run the items under no suspicion first, as one part; then the suspects (the
        part that was running when a runner died) one by one; then the quarantined items
        (each once running alone when a runner died) one by one, each committed before the
        next. An item that was running alone when a runner died POISON_STRIKES times is
        poison: it alone fails (``internal_error``) and is recorded in the DLQ. An ordinary
        crash costs one resumed batch and no splitting."""
        records, run = await self._live_work(batch, time.time())
        await self._writeback.commit(records, time.time())
        todo = await self._not_counted(run)
        ledger = await self._ledger.load(batch.batch_id)
        suspects = {tuple(k) for k in ledger.running}

        def strikes(it: BatchItem) -> int:
            return ledger.quarantine.get(item_key(it.job_id, it.index), 0)

        poison = [it for it in todo if strikes(it) >= POISON_STRIKES]
        quarantined = [it for it in todo if 0 < strikes(it) < POISON_STRIKES]
        suspect = [it for it in todo if (it.job_id, it.index) in suspects and not strikes(it)]
        rest = [it for it in todo if (it.job_id, it.index) not in suspects and not strikes(it)]
        log.warning("batch %s delivery %d: resuming %d of %d items: %d clear, %d suspect, "
                    "%d quarantined, %d poison", batch.batch_id, deliveries, len(todo),
                    len(batch.items), len(rest), len(suspect), len(quarantined), len(poison))
        if poison:
            await self._fail_poison(batch, poison, deliveries)
        if rest:
            ledger = await self._ledger.running(batch.batch_id, ledger,
                                                [(it.job_id, it.index) for it in rest])
            await self._writeback.commit(await self._infer(msg, batch, rest), time.time())
        for it in suspect + quarantined:
            ledger = await self._ledger.running(batch.batch_id, ledger, [(it.job_id, it.index)])
            await self._writeback.commit(await self._infer(msg, batch, [it]), time.time())
        await self._report_inferred()
        await msg.ack_sync()
        await self._ledger.forget(batch.batch_id)
        self.batches_done += 1

    async def _report_inferred(self) -> None:
        """Add the items run through the backend since the last report to the registry's
        counter (the cost of redelivery, next to items counted): one Redis call per batch,
        made in the write-back rather than between two inferences."""
        n, self._inferred_unreported = self._inferred_unreported, 0
        if n:
            try:
                await self._registry.count_inferred(self._model, self._version, n)
            except Exception:
                self._inferred_unreported += n  # next time
                raise

    async def _not_counted(self, items: list[BatchItem]) -> list[BatchItem]:
        """The items no runner has counted yet (one marker read per job)."""
        done: set[tuple[str, int]] = set()
        for job_id in {it.job_id for it in items}:
            idx = [it.index for it in items if it.job_id == job_id]
            done |= {(job_id, i) for i in await self._writeback.done_items(job_id, idx)}
        return [it for it in items if (it.job_id, it.index) not in done]

    async def _fail_poison(self, batch: Batch, items: list[BatchItem], deliveries: int) -> None:
        """Record the batch in the DLQ naming its poison items, and fail those items alone."""
        names = ", ".join(f"{it.job_id}/{it.index}" for it in items)
        reason = f"item(s) {names} killed the runner {POISON_STRIKES} times running alone"
        letter = DeadLetter(batch.batch_id, self._model, self._version, deliveries, reason,
                            encode(batch))
        await self._js.publish(subjects.dlq_subject(self._model, self._version), encode(letter))
        metrics.DLQ.labels(self._model).inc()
        now = time.time()
        err = ItemError.of(ErrorCode.INTERNAL_ERROR,
                           "this item crashed the inference runner repeatedly; it was isolated "
                           "and failed alone")
        await self._writeback.commit([self._failed_record(it.job_id, it.index, it.client_id,
                                                          err, now) for it in items], now)
        log.error("batch %s: poison %s failed and dead-lettered", batch.batch_id, names)

    async def _infer(self, msg: Msg, batch: Batch, items: list[BatchItem]) -> list[ItemRecord]:
        """Run the items; a batch that fails as a whole is split to isolate the bad item."""
        try:
            vectors = await self._run_heartbeating(msg, batch.bucket, items)
        except Exception as exc:  # noqa: BLE001 - backend errors are per-batch facts
            if len(items) == 1:
                log.error("item %s/%d failed in the backend: %s", items[0].job_id,
                          items[0].index, exc, extra=job_log_fields(batch, items[0].job_id))
                return [self._failed_record(items[0].job_id, items[0].index, items[0].client_id,
                                            ItemError.of(ErrorCode.INTERNAL_ERROR,
                                                         f"inference failed: {exc}"), time.time())]
            mid = len(items) // 2
            return (await self._infer(msg, batch, items[:mid])
                    + await self._infer(msg, batch, items[mid:]))
        faults.crash_point("runner.after_inference")
        metrics.ITEMS_INFERRED.labels(self._model).inc(len(items))
        self._inferred_unreported += len(items)  # reported by the write-back, off this path
        now = time.time()
        out = []
        for it, vec in zip(items, vectors, strict=True):
            payload = EmbeddingOutput(vec.tolist(), len(it.token_ids), it.truncated)
            out.append(ItemRecord(job_id=it.job_id, index=it.index, status="succeeded",
                                  model_version=self._version, client_id=it.client_id,
                                  output=encode_output(payload), finished_at=now))
            if it.enqueued_at:
                metrics.ITEM_LATENCY.labels(self._model).observe(max(0.0, now - it.enqueued_at))
        return out

    async def _run_heartbeating(self, msg: Msg, bucket: int, items: list[BatchItem]) -> np.ndarray:
        ids, mask = pad_batch([it.token_ids for it in items], bucket)
        work = asyncio.create_task(asyncio.to_thread(
            self._timed_run, ids, mask, bucket, [it.client_id for it in items]))
        interval = max(1.0, self._s.batch_ack_wait_s / 3)
        while True:
            done, _ = await asyncio.wait({work}, timeout=interval)
            if done:
                return work.result()
            await msg.in_progress()  # a long batch must not be redelivered while it runs

    def _timed_run(self, ids: np.ndarray, mask: np.ndarray, bucket: int,
                   client_ids: list[str | None]) -> np.ndarray:
        with self._busy.busy(len(ids)):
            t0 = time.perf_counter()
            faults.crash_if_poison(client_ids)
            out = self._backend.run(ids, mask)
            metrics.INFERENCE_SECONDS.labels(self._model, self._backend.name, str(bucket)).observe(
                time.perf_counter() - t0)
        return out

    def _failed_record(self, job_id: str, index: int, client_id: str | None, err: ItemError,
                       now: float) -> ItemRecord:
        return ItemRecord(job_id=job_id, index=index, status="failed", model_version=self._version,
                          client_id=client_id, error_code=err.code, error_message=err.message,
                          error_retryable=err.retryable, finished_at=now)

    async def _dead_letter(self, msg: Msg, batch: Batch, deliveries: int, reason: str) -> None:
        """Record the batch in the DLQ, fail its items with internal_error, terminate it."""
        letter = DeadLetter(batch.batch_id, self._model, self._version, deliveries, reason,
                            msg.data)
        await self._js.publish(subjects.dlq_subject(self._model, self._version), encode(letter))
        metrics.DLQ.labels(self._model).inc()
        now = time.time()
        records, run = await self._live_work(batch, now)
        err = ItemError.of(ErrorCode.INTERNAL_ERROR,
                           f"the item's batch failed {deliveries - 1} times ({reason})")
        records += [self._failed_record(it.job_id, it.index, it.client_id, err, now)
                    for it in await self._not_counted(run)]
        await self._writeback.commit(records, now)
        await msg.term()
        log.error("batch %s dead-lettered after %d deliveries; %d item(s) failed",
                  batch.batch_id, deliveries - 1, len(records))
