"""Per-tenant usage in Redis: one hash per tenant and UTC day, counted exactly once.

``inferq:usage:{tenant}:{YYYY-MM-DD}`` holds ``<model>|<counter>`` fields (:data:`COUNTERS`).
Nothing in Python writes them: the job-state scripts add to them in the same atomic call that
counts results or ends a job (``record_results.lua``, ``fail_remaining.lua``, through the
helper ``usage.lua`` prepended to both), so an item is in usage exactly when it is counted in
its job — once, however often its batch is redelivered — and a job's outcome when it ends.
The day is the UTC day of that call. A day's hash expires one day after the latest retention
(``expires_at``) of the jobs counted into it, which its ``keep_until`` field (epoch ms)
remembers: usage is kept as long as the results it describes.

Usage is not rebuilt after a Redis data loss (job counters are, from the result store): the
durable rows hold no inference time, and a hash rebuilt from them counts nothing again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from store.redis_errors import redis_errors

USAGE_PREFIX = "inferq:usage:"
COUNTERS = ("jobs_succeeded", "jobs_failed", "items_succeeded", "items_failed", "input_tokens",
            "inference_us")
"""The counters of one (tenant, day, model), as the Lua scripts spell them."""


class ItemUsage(msgspec.Struct, frozen=True, array_like=True):
    """What one item that ran cost: its input tokens and its share of the batch's inference
    time (by padded tokens), in microseconds. Counted only when its result is."""

    input_tokens: int
    inference_us: int


class DayUsage(msgspec.Struct, frozen=True):
    """One (day, model)'s counters, as read back."""

    day: str
    model: str
    jobs_succeeded: int = 0
    jobs_failed: int = 0
    items_succeeded: int = 0
    items_failed: int = 0
    input_tokens: int = 0
    inference_us: int = 0


def day_of(t: float) -> str:
    """The UTC day of an epoch time, as the usage keys spell it (``YYYY-MM-DD``)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat()


def usage_key(tenant: str, day: str, prefix: str = USAGE_PREFIX) -> str:
    """The Redis key of a tenant's usage on one UTC day."""
    return f"{prefix}{tenant}:{day}"


class UsageLedger:
    """Reads a tenant's usage hashes; the scripts that count results are its only writers."""

    def __init__(self, redis: Redis, *, prefix: str = USAGE_PREFIX):
        self._redis = redis
        self._prefix = prefix

    async def read(self, tenant: str, days: Sequence[str]) -> list[DayUsage]:
        """Every (day, model) with usage among ``days`` (one pipelined HGETALL per day), in
        day order then model order. Fields this build does not know are ignored."""
        with redis_errors("usage"):
            async with self._redis.pipeline(transaction=False) as p:
                for day in days:
                    p.hgetall(usage_key(tenant, day, self._prefix))
                rows = await p.execute()
        out: list[DayUsage] = []
        for day, raw in zip(days, rows, strict=True):
            models: dict[str, dict[str, int]] = {}
            for k, v in raw.items():
                model, _, counter = _text(k).rpartition("|")
                if model and counter in COUNTERS:
                    models.setdefault(model, {})[counter] = int(v)
            out += [DayUsage(day, model, **c) for model, c in sorted(models.items())]
        return out


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
