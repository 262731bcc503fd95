"""The infer stage: run items on the backend in a worker thread while the batch's lease is
kept alive, and isolate a failing item by splitting the batch that failed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from nats.aio.msg import Msg

from core import faults, metrics
from core.config import Settings
from gpu_runner import records
from gpu_runner.backends.base import Backend
from gpu_runner.busy import BusyMeter
from gpu_runner.gate import DeviceGate
from gpu_runner.logcontext import job_log_fields
from models.bucketing import pad_batch
from schemas.bus import Batch, BatchItem
from schemas.errors import ErrorCode, ItemError
from store.results.base import ItemRecord
from store.usage import ItemUsage

log = logging.getLogger("inferq.runner")

MIN_IN_PROGRESS_S = 1.0
"""Floor of the in-progress interval, however short AckWait is configured."""


@dataclass(frozen=True)
class Inferred:
    """Item records and what each item that ran cost, by (job id, index): what a write-back
    commits (items known without inference cost nothing)."""

    records: list[ItemRecord] = field(default_factory=list)
    usage: dict[tuple[str, int], ItemUsage] = field(default_factory=dict)

    def __add__(self, other: Inferred) -> Inferred:
        return Inferred(self.records + other.records, {**self.usage, **other.usage})


def share_by_tokens(seconds: float, padded: list[int]) -> list[int]:
    """A batch's inference time split over its items by padded tokens (what the device
    paid for), in whole microseconds that add up to the batch's."""
    total, out, before, acc = sum(padded), [], 0, 0
    for p in padded:
        acc += p
        upto = round(seconds * 1e6 * acc / total) if total else 0
        out.append(upto - before)
        before = upto
    return out


class InferredTally:
    """Items run through the backend since the last report to the registry (the cost of
    redelivery, next to the items counted once). Reported by the write-back, one Redis call
    per batch, rather than between two inferences."""

    def __init__(self) -> None:
        self._unreported = 0

    def add(self, n: int) -> None:
        """Count ``n`` items just inferred."""
        self._unreported += n

    async def report(self, send: Callable[[int], Awaitable[None]]) -> None:
        """Send the items not yet reported; on failure they are kept for the next report."""
        n, self._unreported = self._unreported, 0
        if n:
            try:
                await send(n)
            except Exception:
                self._unreported += n
                raise


class Inference:
    """Runs items of one model version on its backend: one batch at a time, or side by side
    up to the backend's ``concurrency`` (the runner decides)."""

    def __init__(self, settings: Settings, backend: Backend, model: str, version: int,
                 busy: BusyMeter, tally: InferredTally):
        self._backend = backend
        self._model, self._version = model, version
        self._busy = busy
        self._tally = tally
        self._gate = DeviceGate(backend.concurrency)
        self._in_progress_s = max(MIN_IN_PROGRESS_S, settings.batch_ack_wait_s / 3)
        self._to_bucket = backend.supported_shapes().exact or backend.simulated
        """Pad each batch to its bucket (fixed-shape engines, and the simulated device that
        stands in for one); else to its longest row: a dynamic-shape runtime (ONNX Runtime,
        OpenVINO) then computes no all-padding columns (``padded_width``)."""
        """A batch running longer than AckWait must not be redelivered meanwhile: it says
        "in progress" three times per AckWait."""

    @property
    def concurrency(self) -> int:
        """Batches the backend can run side by side (``Backend.concurrency``)."""
        return self._backend.concurrency

    @property
    def ahead(self) -> int:
        """Batches launched beyond those on the device, waiting at its gate (``Backend.ahead``)."""
        return self._backend.ahead

    async def run(self, msg: Msg, batch: Batch, items: list[BatchItem], *,
                  shared: bool = False) -> Inferred:
        """One record per item, and the usage of each that succeeded. A part that fails as a
        whole is split in two and each half run again, down to single items: only the item
        that fails alone is failed. ``shared``: other batches run beside it, each on its own
        share of the device (``Backend.run``)."""
        try:
            vectors, seconds = await self._run_leased(msg, batch.bucket, items, shared,
                                                      batch.urgent)
        except Exception as exc:  # noqa: BLE001 - backend errors are per-batch facts
            if len(items) == 1:
                [it] = items
                log.error("item %s/%d failed in the backend: %s", it.job_id, it.index, exc,
                          extra=job_log_fields(batch, it.job_id))
                err = ItemError.of(ErrorCode.INTERNAL_ERROR, f"inference failed: {exc}")
                return Inferred([records.failed(it, err, self._version, time.time())])
            mid = len(items) // 2
            return (await self.run(msg, batch, items[:mid], shared=shared)
                    + await self.run(msg, batch, items[mid:], shared=shared))
        faults.crash_point("runner.after_inference")
        metrics.ITEMS_INFERRED.labels(self._model).inc(len(items))
        self._tally.add(len(items))
        now = time.time()
        out = Inferred()
        # Every item of a batch is padded to the same width: the same padded tokens each. A
        # batch run beside others had its share of the device for that time, not all of it.
        device = 1 / self._backend.concurrency if shared else 1.0
        shares = share_by_tokens(seconds * device, [batch.bucket] * len(items))
        latency = metrics.ITEM_LATENCY.labels(self._model)
        for it, vec, us in zip(items, vectors, shares, strict=True):
            out.records.append(records.succeeded(it, vec, self._version, now,
                                                 simulated=self._backend.simulated))
            out.usage[(it.job_id, it.index)] = ItemUsage(len(it.token_ids), us)
            if it.enqueued_at:
                latency.observe(max(0.0, now - it.enqueued_at))
        return out

    async def _run_leased(self, msg: Msg, bucket: int, items: list[BatchItem], shared: bool,
                          urgent: bool) -> tuple[np.ndarray, float]:
        """Run in a worker thread (waiting its turn at the device gate there), telling
        JetStream the batch is in progress meanwhile."""
        rows = [it.token_ids for it in items]
        ids, mask = pad_batch(rows, bucket if self._to_bucket else padded_width(rows, bucket))
        work = asyncio.create_task(asyncio.to_thread(
            self._timed_run, ids, mask, bucket, [it.client_id for it in items], shared, urgent))
        while True:
            done, _ = await asyncio.wait({work}, timeout=self._in_progress_s)
            if done:
                return work.result()
            await msg.in_progress()

    def _timed_run(self, ids: np.ndarray, mask: np.ndarray, bucket: int,
                   client_ids: list[str | None], shared: bool, urgent: bool
                   ) -> tuple[np.ndarray, float]:
        with self._gate.hold(urgent=urgent), self._busy.busy(len(ids), ids.size):
            t0 = time.perf_counter()
            faults.crash_if_poison(client_ids)
            out = self._backend.run(ids, mask, shared=shared)
            seconds = time.perf_counter() - t0
            metrics.INFERENCE_SECONDS.labels(self._model, self._backend.name, str(bucket)).observe(
                seconds)
        return out, seconds


def padded_width(rows: list[list[int]], bucket: int) -> int:
    """The width a dynamic-shape batch is padded to: its longest row rounded up to a multiple
    of 8, at most its bucket (a runtime that caches per shape sees few distinct widths)."""
    longest = max(map(len, rows))
    return min(bucket, -(-longest // 8) * 8)
