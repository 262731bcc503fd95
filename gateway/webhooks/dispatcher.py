"""The webhook dispatcher: takes due deliveries, sends each job's status document signed
with its tenant's secret, records every attempt, retries failures with exponential backoff
and jitter until ``webhook_retry_window_s`` after the job's end.

Every gateway runs one; due entries are leased, so replicas share the work and a delivery
cut short by a crash is made again once its lease runs out (at least once on the wire; the
``webhook-id`` header is the same on every attempt, so a receiver can drop duplicates).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import UTC, datetime

import httpx
import msgspec

from core import metrics
from core import webhook_signature as sig
from core.config import Settings
from core.tenants import TenantDirectory
from gateway.webhooks.targets import TargetPolicy, TargetRefused
from schemas.states import TERMINAL_JOB
from schemas.webhooks import DeliveryState, WebhookAttempt, WebhookEvent
from store.jobstate import JobStateCache, JobStatusSnapshot
from store.rebuild import rebuild_job_cache
from store.results.base import ResultStore
from store.webhooks import WebhookStore

log = logging.getLogger("inferq.gateway.webhooks")
_JSON = msgspec.json.Encoder()


def webhook_id(job_id: str) -> str:
    """The ``webhook-id`` of a job's end: one message per job, the same on every attempt."""
    return f"msg_{job_id}"


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Delay after failed attempt ``attempt`` (1-based): ``base * 2^(attempt-1)`` capped at
    ``max``, with equal jitter (between half and all of it), so retries from many jobs that
    failed together spread out while each delay still grows."""
    full = min(max_s, base_s * 2 ** min(attempt - 1, 40))
    return full / 2 + rng.random() * full / 2


def iso(t: float) -> str:
    """RFC 3339 in UTC with milliseconds."""
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class WebhookDispatcher:
    """The delivery loop, with ``start()`` and an idempotent ``stop()``; at most
    ``webhook_concurrency`` deliveries in flight (0: this process delivers none)."""

    def __init__(self, settings: Settings, hooks: WebhookStore, cache: JobStateCache,
                 store: ResultStore, tenants: TenantDirectory, policy: TargetPolicy,
                 *, rng: random.Random | None = None):
        self._s = settings
        self._hooks = hooks
        self._cache = cache
        self._store = store
        self._tenants = tenants
        self._policy = policy
        self._rng = rng or random.Random()
        self._task: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._http: httpx.AsyncClient | None = None

    def start(self) -> None:
        """Start the loop (no-op when concurrency is 0, or already started)."""
        if self._task is not None or self._s.webhook_concurrency <= 0:
            return
        self._stopping = asyncio.Event()
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(self._s.webhook_timeout_s), follow_redirects=False,
            limits=httpx.Limits(max_connections=self._s.webhook_concurrency),
            trust_env=False)  # no proxies from the environment: we pinned the address
        self._task = asyncio.create_task(self._loop(), name="gateway-webhooks")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let deliveries in flight finish for ``grace_s``, then cancel them (their leases
        bring them back to another dispatcher); idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._wake.set()
        await asyncio.wait([task, *self._inflight], timeout=grace_s)
        pending = [t for t in (task, *self._inflight) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis may be down: try again next time
                log.warning("webhook step failed: %s", exc,
                            exc_info=log.isEnabledFor(logging.DEBUG))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self._s.webhook_poll_s)
            except TimeoutError:
                pass

    async def step(self, now: float | None = None) -> int:
        """Claim as many due deliveries as there are free slots and start them."""
        free = self._s.webhook_concurrency - len(self._inflight)
        if free <= 0 or self._stopping.is_set():
            return 0
        now = time.time() if now is None else now
        due = await self._hooks.claim_due(now, self._s.webhook_lease_s, free)
        for job_id in due:
            t = asyncio.create_task(self._guarded(job_id), name=f"webhook-{job_id}")
            self._inflight.add(t)
            t.add_done_callback(self._done)
        return len(due)

    def _done(self, t: asyncio.Task) -> None:
        self._inflight.discard(t)
        self._wake.set()  # a slot is free

    async def _guarded(self, job_id: str) -> None:
        try:
            await self.deliver(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # its lease brings it back
            log.warning("webhook delivery of job %s failed: %s", job_id, exc,
                        exc_info=log.isEnabledFor(logging.DEBUG))

    async def deliver(self, job_id: str) -> DeliveryState | None:
        """One attempt at the job's delivery; returns the state it left (None: nothing to
        deliver)."""
        sub = await self._hooks.get(job_id)
        if sub is None or sub.state != DeliveryState.PENDING:
            await self._hooks.drop(job_id)
            return None
        snap = await self._snapshot(job_id)
        if snap is None or snap.status not in TERMINAL_JOB:
            # Only an ended job is put on the due set; an expired one has nothing to send.
            await self._hooks.drop(job_id)
            return None
        if WebhookEvent(f"job.{snap.status}") not in sub.events:
            await self._hooks.record(job_id, None, DeliveryState.SKIPPED)
            return DeliveryState.SKIPPED
        n = await self._hooks.begin_attempt(job_id)
        started = time.time()
        code, error, refused = None, None, False
        try:
            code = await self._post(sub.url, sub.tenant, job_id, _JSON.encode(snap.to_doc()))
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except TargetRefused as exc:
            error, refused = f"target refused: {exc}", True
        except (httpx.HTTPError, OSError, LookupError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        now = time.time()
        attempt = WebhookAttempt(attempt=n, at=iso(started),
                                 duration_ms=round((now - started) * 1000, 1),
                                 succeeded=error is None, status_code=code, error=error)
        ended = snap.finished_at or started
        window_end = ended + self._s.webhook_retry_window_s
        if error is None:
            state, next_at, result = DeliveryState.DELIVERED, None, "delivered"
        elif refused or now >= window_end:
            state, next_at = DeliveryState.FAILED, None
            result = "refused" if refused else "failed_final"
        else:
            delay = backoff_s(n, self._s.webhook_backoff_s, self._s.webhook_backoff_max_s,
                              self._rng)
            state, next_at, result = DeliveryState.PENDING, min(now + delay, window_end), \
                "failed_retry"
        metrics.WEBHOOK_ATTEMPTS.labels(result).inc()
        await self._hooks.record(job_id, attempt, state, next_at)
        if error is not None:
            log.info("webhook of job %s, attempt %d: %s (%s)", job_id, n, error, state)
        return state

    async def _post(self, url: str, tenant_name: str, job_id: str, body: bytes) -> int:
        tenant = self._tenants.get(tenant_name)
        if tenant is None or not tenant.webhook_secret:
            raise LookupError(f"tenant {tenant_name} has no webhook secret to sign with")
        host, ip = await self._policy.resolve(url)
        parsed = httpx.URL(url)
        headers = {"content-type": "application/json", "user-agent": "inferq-webhooks/1",
                   "host": parsed.netloc.decode("ascii"),
                   **sig.headers(tenant.webhook_secret, webhook_id(job_id), body)}
        extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
        assert self._http is not None, "start() first"
        request = self._http.build_request("POST", parsed.copy_with(host=str(ip)),
                                           content=body, headers=headers,
                                           extensions=extensions)
        response = await self._http.send(request, stream=True)
        await response.aclose()  # the answer's body is not ours to read
        return response.status_code

    async def _snapshot(self, job_id: str) -> JobStatusSnapshot | None:
        snap = await self._cache.get_status(job_id)
        if snap is None and await rebuild_job_cache(self._store, self._cache, job_id):
            snap = await self._cache.get_status(job_id)
        return snap
