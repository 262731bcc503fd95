"""Admission: the two overload signals, decided before any work, in one Redis call.

Per API key (429, "slow yourself down"): token buckets for submit requests per second, items
per minute and status polls per second, and the tenant's backlog quota (items queued or
running). System-wide (503, "just wait"): the model's backlog limit. A refusal changes
nothing. Every answer on a limited route carries the RateLimit header fields of its tightest
bucket (draft-ietf-httpapi-ratelimit-headers: ``RateLimit-Limit``, ``-Remaining``, ``-Reset``
and ``RateLimit-Policy``).
"""

from __future__ import annotations

import math
import time

from core.config import Settings
from core.tenants import Tenant
from gateway import errors as E
from gateway.load import LoadView
from schemas.api import FieldError
from schemas.states import Priority
from store.ratelease import ReadLeases
from store.ratelimit import Bucket, Ceiling, Decision, RateLimiter

POLL_COST = 1.0
"""Tokens a status poll answered with a 200 costs; a 304 costs ``CONDITIONAL_POLL_COST``."""
CONDITIONAL_POLL_COST = 0.5


class Admission:
    """Admits or refuses each request before any work, from one atomic Redis call: the API
    key's token buckets, the tenant's quota and the model's backlog limit."""

    def __init__(self, settings: Settings, limiter: RateLimiter, load: LoadView, *,
                 backlog_key: str = "inferq:backlog", prefix: str = "inferq:rl:"):
        self._s = settings
        self._limiter = limiter
        self._reads = ReadLeases(limiter, lease_s=settings.poll_lease_s) \
            if settings.poll_lease_s > 0 else None
        self._load = load
        self._backlog_key = backlog_key
        self._prefix = prefix

    # The buckets of one API key (``key_id``: a prefix of the key's SHA-256).

    def requests(self, tenant: Tenant, key_id: str) -> Bucket:
        """The key's requests/s bucket (submits, replays, cancels)."""
        rate = tenant.requests_per_s
        return Bucket("requests", f"{self._prefix}{key_id}:req", rate,
                      max(1.0, rate * self._s.rate_burst_s))

    def items(self, tenant: Tenant, key_id: str, n: int) -> Bucket:
        """The key's items/min bucket, taking ``n`` items; it holds one minute of items."""
        per_min = tenant.items_per_min
        return Bucket("items", f"{self._prefix}{key_id}:items", per_min / 60.0, per_min, n)

    def polls(self, tenant: Tenant, key_id: str, cost: float) -> Bucket:
        """The key's polls/s bucket (status and result reads), taking ``cost`` tokens."""
        rate = tenant.polls_per_s
        return Bucket("polls", f"{self._prefix}{key_id}:polls", rate,
                      max(1.0, rate * self._s.rate_burst_s), cost)

    # Decisions

    async def submit(self, tenant: Tenant, key_id: str, model: str, n: int) -> dict[str, str]:
        """Admit a new job of ``n`` items, or raise 429 / 503 (413 if it can never fit)."""
        self._never_fits(tenant, n)
        ceilings = [
            Ceiling("quota", self._backlog_key, (f"t:{tenant.name}",), tenant.backlog_quota, n),
            Ceiling("model", self._backlog_key, tuple(f"m:{model}:{p}" for p in Priority),
                    self._s.model_backlog_limit, n),
        ]
        d = await self._limiter.take(time.time(), [self.requests(tenant, key_id),
                                                   self.items(tenant, key_id, n)], ceilings)
        if d.allowed:
            return rate_limit_headers(d)
        if d.refused_by == "quota":
            excess = d.counts["quota"] + n - tenant.backlog_quota
            raise E.QuotaExceeded(
                f"tenant {tenant.name} has {d.counts['quota']} items queued or running; its "
                f"backlog quota is {tenant.backlog_quota} and this job adds {n}",
                retry_after_s=self._drain_hint(model, excess), headers=rate_limit_headers(d))
        if d.refused_by == "model":
            excess = d.counts["model"] + n - self._s.model_backlog_limit
            raise E.Overloaded(
                f"model {model} has {d.counts['model']} items queued or running, over its "
                f"backlog limit of {self._s.model_backlog_limit}; retry later",
                retry_after_s=self._drain_hint(model, excess))
        raise self._rate_limited(d)

    async def write(self, tenant: Tenant, key_id: str) -> dict[str, str]:
        """A request that creates no items (a replayed submit, a cancel): one request token."""
        d = await self._limiter.take(time.time(), [self.requests(tenant, key_id)])
        if not d.allowed:
            raise self._rate_limited(d)
        return rate_limit_headers(d)

    async def read(self, tenant: Tenant, key_id: str, cost: float = POLL_COST) -> dict[str, str]:
        """A status poll or a results read, from the key's (larger) polls bucket."""
        d = await self._take_read(self.polls(tenant, key_id, cost))
        if not d.allowed:
            raise self._rate_limited(d)
        return rate_limit_headers(d)

    async def charge_read(self, tenant: Tenant, key_id: str, cost: float) -> dict[str, str]:
        """Charge after the fact and never refuse: the rest of a conditional poll that was
        answered with a 200 instead of a 304."""
        d = await self._take_read(self.polls(tenant, key_id, cost), force=True)
        return rate_limit_headers(d)

    async def _take_read(self, bucket: Bucket, *, force: bool = False) -> Decision:
        if self._reads is not None:
            return await self._reads.take(time.time(), bucket, force=force)
        return await self._limiter.take(time.time(), [bucket], force=force)

    def _never_fits(self, tenant: Tenant, n: int) -> None:
        for limit, what in ((tenant.items_per_min, "items per minute for this API key"),
                            (tenant.backlog_quota, f"items in tenant {tenant.name}'s backlog"),
                            (self._s.model_backlog_limit, "items in a model's backlog")):
            if n > limit:
                raise E.PayloadTooLarge(
                    f"{n} items can never be admitted: the limit is {int(limit)} {what}; "
                    "split the job", errors=[FieldError("/inputs", f"at most {int(limit)} items")])

    def _drain_hint(self, model: str, excess: int) -> float:
        wait = self._load.drain_s(model, excess)
        if wait is None:
            return self._s.overload_retry_after_s
        return min(60.0, max(1.0, wait))

    @staticmethod
    def _rate_limited(d: Decision) -> E.RateLimited:
        return E.RateLimited(
            f"this API key is over its {d.refused_by} rate; retry after the Retry-After delay",
            retry_after_s=max(d.retry_after_s, 0.001), headers=rate_limit_headers(d))


def rate_limit_headers(d: Decision) -> dict[str, str]:
    """RateLimit header fields: the tightest bucket's limit, remaining and reset, and the
    policy of every bucket as ``<capacity>;w=<seconds to refill it>;comment="<name>"``."""
    b = d.tightest()
    if b is None:
        return {}
    policy = ", ".join(
        f'{int(s.capacity)};w={max(1, math.ceil(s.capacity / s.rate))};comment="{s.name}"'
        for s in d.buckets)
    return {
        "RateLimit-Limit": str(int(b.capacity)),
        "RateLimit-Remaining": str(max(0, math.floor(b.remaining))),
        "RateLimit-Reset": str(math.ceil(b.full_in_s)),
        "RateLimit-Policy": policy,
    }
