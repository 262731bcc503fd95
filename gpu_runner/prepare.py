"""The prepare stage: a received batch made ready for the backend while the previous one
runs — its items marked running and sorted — or settled here when it must not run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nats.aio.msg import Msg

from core.config import Settings
from gpu_runner.deadletter import DeadLetters
from gpu_runner.receive import deliveries
from gpu_runner.triage import Triage
from schemas.bus import Batch, BatchItem
from store.results.base import ItemRecord


@dataclass(frozen=True, slots=True)
class Prepared:
    """A received batch, decoded, its items marked running: ready for the backend."""

    msg: Msg
    batch: Batch
    deliveries: int
    records: list[ItemRecord] = field(default_factory=list)
    """Results known without inference: pre-failed items, items past their deadline."""
    run: list[BatchItem] = field(default_factory=list)
    resume: bool = False
    """A redelivery: resumed alone, after the write-back in flight (see ``gpu_runner.resume``)."""


class Preparer:
    """Decides what a delivery of a batch is: a first delivery to run, a redelivery to resume
    (triaged then, as it runs alone), or one past ``batch_max_deliver`` to dead-letter."""

    def __init__(self, settings: Settings, triage: Triage, dead_letters: DeadLetters):
        self._max_deliver = settings.batch_max_deliver
        self._triage = triage
        self._dead_letters = dead_letters

    async def prepare(self, msg: Msg, batch: Batch) -> Prepared | None:
        """The batch ready to run; None when it was dead-lettered here."""
        delivered = deliveries(msg)
        if delivered > self._max_deliver:
            await self._dead_letters.retire(msg, batch, delivered)
            return None
        if delivered > 1:
            return Prepared(msg, batch, delivered, resume=True)
        known, run = await self._triage.sort(batch, time.time())
        return Prepared(msg, batch, delivered, known, run)
