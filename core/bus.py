"""NATS JetStream: connecting, provisioning streams and consumers, and error translation.

Streams and consumers are created or updated idempotently by whichever process needs them,
so any role can start first.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import api as jsapi
from nats.js import errors as jserr

from schemas import subjects

log = logging.getLogger("inferq.bus")


class BusError(Exception):
    """Root of bus errors; ``retryable`` says whether waiting and retrying can help."""

    retryable = True


class BusUnavailable(BusError):
    """NATS could not be reached at all (start-up): retry once the server is back."""


async def hint(nc: NATS, subject: str) -> None:
    """Publish a wake-up hint on core NATS (no stream captures ``inferq.signal.>``): fire and
    forget, since every receiver also polls — a lost hint costs a poll interval, never
    correctness."""
    try:
        await nc.publish(subject)
    except Exception:  # a lost hint is harmless
        log.debug("hint %s not sent", subject, exc_info=True)


async def connect(url: str, name: str) -> NATS:
    """A connection that reconnects forever (clients reconnect on their own after an outage)."""

    async def on_disconnect() -> None:
        if not nc.is_closed and not nc.is_draining:
            log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    async def on_error(exc: Exception) -> None:
        log.debug("nats error: %s", exc)

    nc = NATS()
    try:
        await nc.connect(
            servers=[u.strip() for u in url.split(",") if u.strip()],
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=5,
            allow_reconnect=True,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            error_cb=on_error,
        )
    except Exception as exc:
        raise BusUnavailable(f"cannot connect to NATS at {url}: {exc}") from exc
    return nc


def _stream_configs(replicas: int, dlq_max_age_s: float) -> list[jsapi.StreamConfig]:
    common = dict(storage=jsapi.StorageType.FILE, num_replicas=replicas)
    return [
        jsapi.StreamConfig(
            name=subjects.JOBS_STREAM,
            subjects=[f"{subjects.JOBS_PREFIX}.>"],
            retention=jsapi.RetentionPolicy.WORK_QUEUE,
            duplicate_window=120.0,
            max_msg_size=4 * 1024 * 1024,
            **common,
        ),
        jsapi.StreamConfig(
            name=subjects.BATCHES_STREAM,
            subjects=[f"{subjects.BATCHES_PREFIX}.>"],
            retention=jsapi.RetentionPolicy.WORK_QUEUE,
            max_msg_size=8 * 1024 * 1024,
            **common,
        ),
        jsapi.StreamConfig(
            name=subjects.DLQ_STREAM,
            subjects=[f"{subjects.DLQ_PREFIX}.>"],
            retention=jsapi.RetentionPolicy.LIMITS,
            max_age=dlq_max_age_s,
            **common,
        ),
    ]


async def provision_streams(js: JetStreamContext, *, replicas: int = 1,
                            dlq_max_age_s: float = 7 * 86400) -> None:
    """Create the JOBS, BATCHES and DLQ streams, or update them to this configuration."""
    for cfg in _stream_configs(replicas, dlq_max_age_s):
        try:
            await js.add_stream(cfg)
        except jserr.BadRequestError as exc:
            # Already exists with another configuration: update what may be updated.
            if exc.err_code in (10058, 10065):  # stream name in use / subjects overlap
                await js.update_stream(cfg)
            else:
                raise
        log.debug("stream %s ready", cfg.name)


async def ensure_consumer(js: JetStreamContext, stream: str, cfg: jsapi.ConsumerConfig) -> None:
    """Create a durable pull consumer, or update it in place (the server's create is an upsert
    for the fields that may change, such as AckWait and MaxAckPending)."""
    await js.add_consumer(stream, cfg)
