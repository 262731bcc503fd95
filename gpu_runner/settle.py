"""The ack/nak stage: how a batch leaves a runner. Acked once written back; nak'ed for a later
retry when a stage failed; given back at once on shutdown. Every stage runs under
``Settle.guard``, the one place where a failure is turned into a nak."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable
from contextlib import nullcontext
from typing import TypeVar

from nats.aio.msg import Msg

from core.config import Settings
from gpu_runner.logcontext import log_context, stage_spans
from gpu_runner.receive import deliveries
from schemas.bus import Batch
from store.redis_errors import CacheUnavailable
from store.results.base import StoreError

log = logging.getLogger("inferq.runner")

T = TypeVar("T")

TRANSIENT = (StoreError, CacheUnavailable)
"""Failures of a dependency that comes back by itself: retried with backoff, never counted
against the batch's items."""


class Stage(enum.StrEnum):
    """The runner's pipeline, in order; a failure log names the stage it happened in."""

    RECEIVE = "receive"
    PREPARE = "prepare"
    INFER = "infer"
    WRITE_BACK = "write back"
    RESUME = "resume"
    """Infer and write back a redelivered batch part by part (see ``gpu_runner.resume``)."""


TRACED = frozenset({Stage.INFER, Stage.WRITE_BACK, Stage.RESUME})
"""The stages recorded as spans when spans are exported (``gpu_runner.logcontext``)."""


def backoff_s(settings: Settings, delivered: int) -> float:
    """Nak delay after a transient failure at this delivery: ``redelivery_backoff_s``
    doubling per delivery, up to ``redelivery_backoff_max_s``."""
    return min(settings.redelivery_backoff_max_s,
               settings.redelivery_backoff_s * 2 ** (delivered - 1))


class Settle:
    """Acks, naks and the failure policy of one runner; counts the batches it acked."""

    def __init__(self, settings: Settings):
        self._s = settings
        self.acked = 0

    async def guard(self, stage: Stage, msg: Msg, batch: Batch | None,
                    work: Awaitable[T]) -> T | None:
        """Run one stage of a batch in its log context. A transient failure naks it with
        backoff; anything else (a NATS error, a bug) is logged and nak'ed after
        ``dependency_retry_s``: a bug must not kill the loop. None when it failed."""
        with log_context(batch) if batch is not None else nullcontext():
            try:
                with stage_spans(stage, batch) if batch is not None and stage in TRACED \
                        else nullcontext():
                    return await work
            except asyncio.CancelledError:
                raise
            except TRANSIENT as exc:
                delay = backoff_s(self._s, deliveries(msg))
                log.warning("batch %s: transient error in %s (%s); nak, retry in %.1fs",
                            _batch_id(batch), stage, exc, delay)
            except Exception:
                delay = self._s.dependency_retry_s
                log.exception("batch %s: unexpected error in %s; nak for %.1fs",
                              _batch_id(batch), stage, delay)
            await self._nak(msg, batch, delay)
            return None

    async def ack(self, msg: Msg, batch: Batch) -> bool:
        """Ack a batch whose every item is written back; False if the ack did not reach
        NATS: harmless, the redelivery finds every item counted and only acks."""
        try:
            await msg.ack_sync()
        except Exception as exc:  # noqa: BLE001 - NATS outage: expected, and harmless
            log.warning("ack of batch %s failed (%s); it will be redelivered and skipped",
                        batch.batch_id, exc)
            return False
        self.acked += 1
        return True

    async def give_back(self, msg: Msg) -> None:
        """Return a batch that will not run here (shutting down) for redelivery now, not
        after AckWait."""
        try:
            await msg.nak()
        except Exception:  # noqa: BLE001 - redelivered after AckWait anyway
            pass

    async def _nak(self, msg: Msg, batch: Batch | None, delay: float) -> None:
        try:
            await msg.nak(delay=delay)
        except Exception:  # redelivered after AckWait anyway
            log.warning("nak failed for batch %s", _batch_id(batch), exc_info=True)


def _batch_id(batch: Batch | None) -> str:
    return batch.batch_id if batch is not None else "(undecoded)"
