"""Publishing batches on BATCHES, each under its first job's traceparent."""

from __future__ import annotations

from nats.js import JetStreamContext

from core.tracing import HEADER as TRACEPARENT
from schemas import subjects
from schemas.bus import Batch, encode


def lead_trace(batch: Batch) -> str | None:
    """The traceparent the NATS header carries: the first job's (items, else failed items);
    every job's own is in ``batch.traces``."""
    first = batch.items[0].job_id if batch.items else (
        batch.failed[0].job_id if batch.failed else None)
    return batch.traces.get(first) if first else None


class BatchPublisher:
    """Publishes batches to their model version's subject and counts them."""

    def __init__(self, js: JetStreamContext):
        self._js = js
        self.published = 0
        """Batches published so far (tests and diagnostics)."""

    async def publish(self, batch: Batch) -> None:
        """Publish and wait for JetStream's ack; any failure raises (nothing is retried here)."""
        trace = lead_trace(batch)
        await self._js.publish(subjects.batch_subject(batch.model, batch.model_version,
                                                      urgent=batch.urgent),
                               encode(batch), headers={TRACEPARENT: trace} if trace else None)
        self.published += 1
