"""Dead letters: a batch a runner gives up on, wholly or in part, is recorded in the DLQ (one
publish, as delivered, before anything else) and the items given up on fail
``internal_error``, so that their jobs still end."""

from __future__ import annotations

import logging
import time

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from core import metrics
from gpu_runner import records
from gpu_runner.triage import Triage
from gpu_runner.writeback import WriteBack
from schemas import subjects
from schemas.bus import Batch, BatchItem, DeadLetter, encode
from schemas.errors import ErrorCode, ItemError

log = logging.getLogger("inferq.runner")

EXHAUSTED = "max deliveries exhausted"


class DeadLetters:
    """The DLQ of one model version, and the failing of the items a dead letter gives up."""

    def __init__(self, js: JetStreamContext, model: str, version: int, writeback: WriteBack,
                 triage: Triage):
        self._js = js
        self._model, self._version = model, version
        self._writeback = writeback
        self._triage = triage

    async def retire(self, msg: Msg, batch: Batch, delivered: int) -> None:
        """A batch past ``batch_max_deliver``: record it, fail every item no runner counted,
        and terminate it."""
        await self._post(msg, batch, delivered, EXHAUSTED)
        now = time.time()
        known, run = await self._triage.sort(batch, now)
        err = ItemError.of(ErrorCode.INTERNAL_ERROR,
                           f"the item's batch failed {delivered - 1} times ({EXHAUSTED})")
        known += [records.failed(it, err, self._version, now)
                  for it in await self._writeback.not_counted(run)]
        await self._writeback.commit(known, now)
        await msg.term()
        log.error("batch %s dead-lettered after %d deliveries; %d item(s) failed",
                  batch.batch_id, delivered - 1, len(known))

    async def fail_poison(self, msg: Msg, batch: Batch, delivered: int, items: list[BatchItem],
                          strikes: int) -> None:
        """Record the batch naming its poison items, and fail those items alone (the rest of
        the batch goes on)."""
        names = ", ".join(f"{it.job_id}/{it.index}" for it in items)
        await self._post(msg, batch, delivered,
                         f"item(s) {names} killed the runner {strikes} times running alone")
        now = time.time()
        err = ItemError.of(ErrorCode.INTERNAL_ERROR,
                           "this item crashed the inference runner repeatedly; it was isolated "
                           "and failed alone")
        await self._writeback.commit([records.failed(it, err, self._version, now)
                                      for it in items], now)
        log.error("batch %s: poison %s failed and dead-lettered", batch.batch_id, names)

    async def _post(self, msg: Msg, batch: Batch, delivered: int, reason: str) -> None:
        letter = DeadLetter(batch.batch_id, self._model, self._version, delivered, reason,
                            msg.data)
        await self._js.publish(subjects.dlq_subject(self._model, self._version), encode(letter))
        metrics.DLQ.labels(self._model).inc()
