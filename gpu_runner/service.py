"""The runner: one model version's batches through a pipeline of named stages — receive,
prepare, infer, write back, ack/nak — with the next batch received and prepared while this one
is inferred (beside others where the backend runs batches side by side), and the previous ones
written back meanwhile.

Each stage lives in its own module (``receive``, ``prepare``, ``infer``, ``writeback``,
``settle``; a redelivered batch goes through ``resume``); every stage runs under
``Settle.guard``, the one place where a failure becomes a nak.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from functools import partial

from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from core import faults, metrics
from core.config import Settings
from core.tasks import stop_task
from gpu_runner.backends.base import Backend
from gpu_runner.busy import BusyMeter
from gpu_runner.deadletter import DeadLetters
from gpu_runner.gpu_util import GpuUtilisation
from gpu_runner.inbox import Inbox
from gpu_runner.infer import Inference, Inferred, InferredTally
from gpu_runner.inflight import InFlight
from gpu_runner.prepare import Prepared, Preparer
from gpu_runner.receive import BatchSource, decode
from gpu_runner.redelivery import RedeliveryLedger
from gpu_runner.resume import Resumer
from gpu_runner.settle import Settle, Stage
from gpu_runner.triage import Triage
from gpu_runner.writeback import WriteBack
from store.jobstate import JobStateCache
from store.results.base import ResultStore
from store.runners import ALIVE_S, RunnerRegistry

log = logging.getLogger("inferq.runner")

HEARTBEAT_S = ALIVE_S / 5
"""A runner counts as alive for ``ALIVE_S`` after its last heartbeat: five beats per window,
so a slow Redis call or two never makes a live runner look dead."""

FIRST_MEASURE_S = 0.25
"""Until a runner has reported a measured capacity, it looks this often whether it has one
(no Redis call unless it has): a beat then tells the schedulers at once."""

FETCH_ERROR_PAUSE_S = 0.5
"""Pause after a failed fetch (NATS reconnecting) before asking again: no busy loop."""


class Runner:
    """Long-running loop with ``start()`` and an idempotent ``stop()``: the batch in hand is
    finished and acked (or left for redelivery if the grace period runs out)."""

    def __init__(self, settings: Settings, nc: NATS, store: ResultStore, cache: JobStateCache,
                 registry: RunnerRegistry, backend: Backend, model: str, version: int,
                 redis: Redis):
        self._s = settings
        self._model, self._version = model, version
        self._registry = registry
        self._id = f"runner-{uuid.uuid4().hex[:8]}"
        self._busy = BusyMeter()
        self._gpu_device = getattr(backend, "device", 0)
        self._gpu = GpuUtilisation(self._gpu_device) if backend.name == "tensorrt" else None
        self._tally = InferredTally()
        self._sources = [BatchSource(settings, nc, model, version)]
        """Urgent batches first (``gpu_runner.inbox``), then the batch work."""
        if settings.urgent_batches:
            self._sources.insert(0, BatchSource(settings, nc, model, version, urgent=True))
        self._writeback = WriteBack(store, cache, model, redis)
        triage = Triage(self._writeback, version)
        dead_letters = DeadLetters(nc.jetstream(), model, version, self._writeback, triage)
        self._preparer = Preparer(settings, triage, dead_letters)
        self._inference = Inference(settings, backend, model, version, self._busy, self._tally)
        self._resumer = Resumer(settings, RedeliveryLedger(redis), self._writeback, triage,
                                self._inference, dead_letters)
        self._settle = Settle(settings)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._hb_task: asyncio.Task | None = None

    @property
    def runner_id(self) -> str:
        """This runner's id in the registry and its logs."""
        return self._id

    @property
    def batches_done(self) -> int:
        """Batches this runner finished and acked."""
        return self._settle.acked

    async def start(self) -> None:
        """Bind to the model version's consumer, announce this runner, start the loop."""
        if self._task is not None:
            return
        for source in self._sources:
            await source.open()
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
        for source in self._sources:
            await source.close()
        try:
            await self._registry.leave(self._model, self._version, self._id)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass

    async def _heartbeat(self) -> None:
        """Every ``HEARTBEAT_S``; and as soon as the first capacity is measured (within
        ``FIRST_MEASURE_S``), so the schedulers form work ahead for a new runner from its
        first batches on rather than seconds later."""
        last, measured = time.monotonic(), False
        while True:
            await asyncio.sleep(HEARTBEAT_S if measured else FIRST_MEASURE_S)
            capacity = self._busy.capacity()
            if (measured or capacity is None) and time.monotonic() - last < HEARTBEAT_S:
                continue
            last = time.monotonic()
            ratio = self._busy.ratio()
            metrics.RUNNER_BUSY.labels(self._model).set(ratio)
            if self._gpu is not None and (util := self._gpu.sample()) is not None:
                metrics.GPU_UTILISATION.labels(self._model, str(self._gpu_device)).set(util)
            try:
                await self._registry.heartbeat(self._model, self._version, self._id, ratio,
                                               capacity, self._busy.token_rate())
            except Exception:
                log.debug("runner heartbeat failed", exc_info=True)
                continue
            measured = capacity is not None

    # ------------------------------------------------------------------ the pipeline

    async def _run(self) -> None:
        """Receive and prepare, infer, write back — overlapped: while batches are inferred
        the next is received and prepared (an urgent one taken first), and the previous ones
        are written back and acked. Up to the backend's ``concurrency`` batches are inferred
        side by side (``gpu_runner.inflight``); between two inferences there is only the
        hand-over, and on a device that works apart from the CPU not even that: its next
        batch already waits at the device gate (``Backend.ahead``). A redelivery may have
        killed a runner: it runs alone, as its ledger assumes, once every batch in hand is
        written back."""
        inbox = Inbox([partial(self._receive, source) for source in self._sources])
        hands = InFlight(self._inference.concurrency, self._inference.ahead,
                         urgent_window_s=self._s.batch_time_budget_window_s)
        try:
            while not self._stopping.is_set():
                await hands.room()
                try:
                    work = await inbox.next()
                except Exception:
                    log.warning("fetch failed", exc_info=True)
                    await asyncio.sleep(FETCH_ERROR_PAUSE_S)
                    continue
                if work is None:
                    continue
                if self._stopping.is_set():
                    await self._settle.give_back(work.msg)
                elif work.resume:
                    await hands.drain()
                    await self._settle.guard(Stage.RESUME, work.msg, work.batch,
                                             self._resume(work))
                else:
                    hands.launch(partial(self._batch, work), backlogged=inbox.backlogged,
                                 urgent=work.batch.urgent)
            await hands.drain()
        except asyncio.CancelledError:
            hands.cancel()
            raise
        for work in await inbox.close():
            await self._settle.give_back(work.msg)

    async def _receive(self, source: BatchSource) -> Prepared | None:
        """Receive and prepare stages: the next batch, ready to run (None: none, or settled)."""
        msg = await source.fetch()
        if msg is None:
            return None
        batch = await self._settle.guard(Stage.RECEIVE, msg, None, decode(msg, self._model))
        if batch is None:
            return None
        return await self._settle.guard(Stage.PREPARE, msg, batch,
                                        self._preparer.prepare(msg, batch))

    async def _batch(self, work: Prepared, shared: bool, inferred: Callable[[], None]) -> None:
        """Infer stage, then (the device handed on) write-back and ack stages."""
        done = await self._settle.guard(Stage.INFER, work.msg, work.batch,
                                        self._infer(work, shared))
        inferred()
        if done is not None:
            await self._settle.guard(Stage.WRITE_BACK, work.msg, work.batch,
                                     self._write_back(work, done))

    async def _infer(self, work: Prepared, shared: bool) -> Inferred:
        """Infer stage: every item's result (known without inference, and inferred) and
        the usage of those that ran."""
        if not work.run:
            return Inferred(work.records)
        return Inferred(work.records) + await self._inference.run(work.msg, work.batch,
                                                                  work.run, shared=shared)

    async def _write_back(self, work: Prepared, done: Inferred) -> None:
        """Write-back and ack stages: results first, the ack only once all are written."""
        await self._report_inferred()
        await self._writeback.commit(done.records, time.time(), done.usage)
        if await self._settle.ack(work.msg, work.batch):
            faults.crash_point("runner.after_ack")

    async def _resume(self, work: Prepared) -> None:
        """A redelivered batch: inferred and written back part by part, then acked."""
        await self._resumer.run(work)
        await self._report_inferred()
        if await self._settle.ack(work.msg, work.batch):
            await self._resumer.forget(work.batch.batch_id)

    async def _report_inferred(self) -> None:
        await self._tally.report(
            lambda n: self._registry.count_inferred(self._model, self._version, n))

