"""The receive stage: a runner's durable pull consumer on BATCHES, and the wake-up that tells
the schedulers a runner is asking (they form batches only then: late formation)."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api as jsapi
from nats.js import errors as jserr

from core import metrics
from core.bus import ensure_consumer, hint
from core.config import Settings
from schemas import subjects
from schemas.bus import BATCH_DECODER, Batch

log = logging.getLogger("inferq.runner")

MAX_ACK_PENDING = 1024
"""Batches the consumer may have out unacked, over all runners of the model version: far
above what runners hold (a handful each: ``gpu_runner.inflight``, plus one prepared per
source)."""


def deliveries(msg: Msg) -> int:
    """How many times JetStream has delivered this message, this delivery included."""
    return msg.metadata.num_delivered if msg.metadata else 1


async def decode(msg: Msg, model: str) -> Batch | None:
    """The batch a message carries (counting redeliveries); None when it carries none, and
    the message is then terminated: no delivery would make it readable."""
    if deliveries(msg) > 1:
        metrics.REDELIVERIES.labels(model).inc()
    try:
        return BATCH_DECODER.decode(msg.data)
    except msgspec.DecodeError:
        log.error("undecodable batch: terminated")
        await msg.term()
        return None


class BatchSource:
    """The batches of one model version, one at a time, from a consumer shared by every
    runner of that version: its batch work, or (``urgent``) its interactive-led batches."""

    def __init__(self, settings: Settings, nc: NATS, model: str, version: int, *,
                 urgent: bool = False):
        self._s = settings
        self._nc = nc
        self._js = nc.jetstream()
        self._model, self._version = model, version
        self.urgent = urgent
        self._sub = None

    def consumer_config(self) -> jsapi.ConsumerConfig:
        """The durable consumer: explicit acks, AckWait from Settings, and one delivery more
        than the runner acts on (at the last one it dead-letters the batch itself)."""
        return jsapi.ConsumerConfig(
            durable_name=subjects.runner_consumer(self._model, self._version,
                                                  urgent=self.urgent),
            filter_subject=subjects.batch_subject(self._model, self._version,
                                                  urgent=self.urgent),
            ack_policy=jsapi.AckPolicy.EXPLICIT,
            ack_wait=self._s.batch_ack_wait_s,
            max_deliver=self._s.batch_max_deliver + 1,
            max_ack_pending=MAX_ACK_PENDING,
        )

    async def open(self) -> None:
        """Create (or update) the consumer and bind a pull subscription to it."""
        cfg = self.consumer_config()
        await ensure_consumer(self._js, subjects.BATCHES_STREAM, cfg)
        self._sub = await self._js.pull_subscribe_bind(
            durable=cfg.durable_name, stream=subjects.BATCHES_STREAM)

    async def fetch(self) -> Msg | None:
        """Ask for the next batch (None if none came within ``runner_fetch_timeout_s``), and
        tell the schedulers we are asking: the wake-up must follow the pull request on the
        wire (they form a batch only for a waiting runner), so the fetch task queues its
        request before its first real wait and one connection keeps the order."""
        if self._sub is None:
            raise RuntimeError("BatchSource.fetch() before open()")
        fetching = asyncio.ensure_future(
            self._sub.fetch(1, timeout=self._s.runner_fetch_timeout_s))
        await asyncio.sleep(0)
        await hint(self._nc, subjects.batch_wanted_subject(self._model, self._version))
        try:
            msgs = await fetching
        except (TimeoutError, jserr.FetchTimeoutError):
            return None
        return msgs[0] if msgs else None

    async def close(self) -> None:
        """Drop the subscription (the durable consumer stays for the other runners)."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            await sub.unsubscribe()
        except Exception:  # noqa: BLE001 - connection already gone
            pass
